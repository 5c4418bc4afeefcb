package web

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/templates"
)

// POST /api/work with a unique_key: a second item while the first waits is
// a 409 naming it (and no item); a bad key is a 400; the item's page shows
// its key.
func TestWorkAPIUniqueKey(t *testing.T) {
	p := newWorkProcessor(t, jobs.Config{}) // not running: items wait
	e := New(Deps{Work: p})
	a := apiDo(t, e, "POST", "/api/work", `{"kind":"email","unique_key":"welcome-ana"}`)
	if a.status != 202 {
		t.Fatalf("first: %d %s", a.status, a.raw)
	}
	var first jobs.WorkItem
	a.decode(t, &first)
	if first.UniqueKey != "welcome-ana" {
		t.Fatalf("item %+v has no unique key", first)
	}
	dup := apiDo(t, e, "POST", "/api/work", `{"kind":"email","unique_key":"welcome-ana","payload":{"x":1}}`)
	var body duplicateError
	dup.decode(t, &body)
	if dup.status != 409 || body.ExistingID != first.ID || body.UniqueKey != "welcome-ana" || body.Field != "unique_key" ||
		dup.header.Get("Location") != "/api/work/"+first.ID {
		t.Fatalf("duplicate: %d %s (Location %q)", dup.status, dup.raw, dup.header.Get("Location"))
	}
	n, err := p.CountWork(context.Background(), "")
	if err != nil || n[jobs.WorkPending].N != 1 {
		t.Fatalf("pending items %+v, %v; want 1", n, err)
	}
	for _, bad := range []string{`{"kind":"email","unique_key":""}`, `{"kind":"email","unique_key":"` + strings.Repeat("k", 256) + `"}`} {
		if a := apiDo(t, e, "POST", "/api/work", bad); a.status != 400 || !strings.Contains(a.raw, `"field":"unique_key"`) {
			t.Errorf("%.60s: %d %s, want 400 naming unique_key", bad, a.status, a.raw)
		}
	}

	// The item's page, from the item as stored.
	stored, err := p.Work(context.Background(), first.ID)
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := templates.WorkItemBody(stored, nil, false).Render(context.Background(), &page); err != nil {
		t.Fatal(err)
	}
	d, err := goquery.NewDocumentFromReader(&page)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Find(`[data-testid="work-unique-key"]`).Text(); got != "welcome-ana" {
		t.Errorf("page shows unique key %q ", got)
	}
	if got := d.Find(`[data-testid="work-unique-states"]`).Text(); got != "unique while pending, retrying or running" {
		t.Errorf("page shows unique states %q", got)
	}
}
