package templates

import (
	"context"
	"time"
)

// Times go out once, in UTC, as <time datetime=…>; static/canal.js shows them
// in the viewer's zone, or in the zone the server was told to show
// (-display-tz), which the page names on <html data-tz>. The text the server
// writes inside is already in that zone (UTC when none is set), so a page read
// without JavaScript is right too, and it says which zone it is.

type zoneKey struct{}

// WithZone returns ctx carrying the zone times are written in; nil is UTC
// and lets each viewer's browser choose its own.
func WithZone(ctx context.Context, loc *time.Location) context.Context {
	return context.WithValue(ctx, zoneKey{}, loc)
}

// zone is the display zone set by WithZone, or nil.
func zone(ctx context.Context) *time.Location {
	loc, _ := ctx.Value(zoneKey{}).(*time.Location)
	return loc
}

// zoneName is the forced display zone's name, or "" when each viewer's own
// zone is used.
func zoneName(ctx context.Context) string {
	if loc := zone(ctx); loc != nil {
		return loc.String()
	}
	return ""
}

// inZone is t in the display zone (UTC when none is set).
func inZone(ctx context.Context, t time.Time) time.Time {
	if loc := zone(ctx); loc != nil {
		return t.In(loc)
	}
	return t.UTC()
}

// Time formats, shared with static/canal.js through data-fmt.
const (
	fmtClock = "clock" // 15:04:05
	fmtStamp = "stamp" // 2006-01-02 15:04:05.000
)

func timeText(ctx context.Context, t time.Time, f string) string {
	if t.IsZero() {
		return "—"
	}
	if f == fmtStamp {
		return inZone(ctx, t).Format("2006-01-02 15:04:05.000")
	}
	return inZone(ctx, t).Format("15:04:05")
}

func ptrTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
