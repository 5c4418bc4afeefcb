package web

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// crossOriginGuard refuses unsafe requests (POST, PUT, DELETE…) that a
// browser marks as cross-site, using the standard library's check of
// Sec-Fetch-Site and Origin. Clients that are not browsers (curl, other
// programs) send neither header and pass.
func crossOriginGuard(cop *http.CrossOriginProtection) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if err := cop.Check(c.Request()); err != nil {
				return jsonError(c, http.StatusForbidden, "cross-origin request refused: "+err.Error())
			}
			return next(c)
		}
	}
}
