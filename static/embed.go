// Package static holds the dashboard's CSS, scripts and vendored htmx,
// embedded in the binary so Canal runs without a build step or a CDN.
package static

import "embed"

// FS is served under /static/.
//
//go:embed canal.css canal.js icon.svg vendor/*.js
var FS embed.FS

// Paths the templates link to; changing a vendored version changes them here.
const (
	HTMX   = "/static/vendor/htmx-2.0.11.min.js"
	HTMXWS = "/static/vendor/htmx-ext-ws-2.0.4.min.js"
	CSS    = "/static/canal.css"
	JS     = "/static/canal.js"
	// Icon is the tab's icon: named by the page, so that the browser does
	// not ask for /favicon.ico outside a prefix the dashboard is under.
	Icon = "/static/icon.svg"
)
