package web

import (
	"time"

	"github.com/a-h/templ"
	"github.com/canalhq/canal/internal/outage"
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

// withDatabase gives every page the database's state for its banner at its
// first load (the hub's frames keep it current).
func withDatabase(m *outage.Monitor) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			c.SetRequest(r.WithContext(templates.WithDatabase(r.Context(), databaseView(m.Status()))))
			return next(c)
		}
	}
}

// databaseView is what the banner shows of st.
func databaseView(st outage.Status) templates.Database {
	if st.Available {
		return templates.Database{}
	}
	return templates.Database{Down: true, Since: st.Since}
}
