package web

import (
	"time"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/templates"
	"github.com/labstack/echo/v4"
)

// render writes a templ component as the response.
func render(c echo.Context, status int, comp templ.Component) error {
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().WriteHeader(status)
	return comp.Render(c.Request().Context(), c.Response())
}

// withZone puts the display zone (nil: each viewer's own) in every request's
// context, where the templates' times read it (templates.WithZone).
func withZone(loc *time.Location) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			c.SetRequest(r.WithContext(templates.WithZone(r.Context(), loc)))
			return next(c)
		}
	}
}
