package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

func mustRead(t testing.TB, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func get(t *testing.T, srv *httptest.Server, path string, want int) *goquery.Document {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := mustRead(t, resp)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d: %.300s", path, resp.StatusCode, want, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET %s: content type %q", path, ct)
	}
	return doc(t, []byte(body))
}

func TestOverviewRendersEveryJobWithButtons(t *testing.T) {
	srv, _, _, _ := uiServer(t)
	d := get(t, srv, "/", http.StatusOK)
	cards := d.Find(`[data-testid="job-card"]`)
	if cards.Length() != 2 {
		t.Fatalf("%d job cards, want 2", cards.Length())
	}
	report := d.Find(`[data-job="report"]`)
	for _, b := range []string{"start", "stop", "trigger"} {
		if report.Find(`[data-testid="`+b+`"]`).Length() != 1 {
			t.Errorf("report has no %s button", b)
		}
	}
	if hx, _ := report.Find(`[data-testid="stop"]`).Attr("hx-post"); hx != "/ui/jobs/report/stop" {
		t.Errorf("stop posts to %q", hx)
	}
	if _, ok := report.Find(`[data-testid="start"]`).Attr("disabled"); !ok {
		t.Error("Start is enabled on a running job")
	}
	if ws, _ := d.Find("body").Attr("ws-connect"); ws != "/ws?topics=overview" {
		t.Errorf("body ws-connect = %q", ws)
	}
	for _, id := range []string{"outbox-stats", "queues", "chart", "feed", "seq"} {
		if d.Find("#"+id).Length() != 1 {
			t.Errorf("overview lacks #%s, which the hub's frames replace", id)
		}
	}
}

func TestJobPageShowsRunHistoryAnd404(t *testing.T) {
	srv, _, _, _ := uiServer(t)
	get(t, srv, "/jobs/nope", http.StatusNotFound).Find(`[data-testid="not-found"]`).Each(func(_ int, s *goquery.Selection) {
		if !strings.Contains(s.Text(), "nope") {
			t.Errorf("404 page does not name the job: %q", s.Text())
		}
	})
	d := get(t, srv, "/jobs/report", http.StatusOK)
	if d.Find(`[data-testid="no-runs"]`).Length() != 1 {
		t.Error("a job with no runs should say so")
	}
}

// eachDB runs f against a migrated jobs store on SQLite and PostgreSQL
// (which skips unless CANAL_TEST_POSTGRES is set).
func eachDB(t *testing.T, f func(t *testing.T, s jobs.Store)) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"sqlite", testenv.SQLite}, {"postgres", testenv.Postgres}} {
		t.Run(d.name, func(t *testing.T) {
			db := d.open(t)
			if err := jobs.Migrate(context.Background(), db); err != nil {
				t.Fatal(err)
			}
			s, err := jobs.NewStore(db)
			if err != nil {
				t.Fatal(err)
			}
			f(t, s)
		})
	}
}

// follow reads every page from path on, by the "Older" link, and returns
// the value of attr on each row matched by rows, in order.
func follow(t *testing.T, srv *httptest.Server, path, rows, attr string) (vals []string, pages int) {
	t.Helper()
	for path != "" && pages < 20 {
		d := get(t, srv, path, http.StatusOK)
		pages++
		d.Find(rows).Each(func(_ int, s *goquery.Selection) {
			v, _ := s.Attr(attr)
			vals = append(vals, v)
		})
		path, _ = d.Find(`[data-testid="next-page"]`).Attr("href")
	}
	return vals, pages
}

// TestJobPageFromTheStoreAfterARestart records runs with one processor,
// then serves the page from a second one and a fresh hub that saw none.
func TestJobPageFromTheStoreAfterARestart(t *testing.T) {
	eachDB(t, func(t *testing.T, s jobs.Store) {
		var calls atomic.Int64
		p1 := jobs.NewProcessor(jobs.Config{Store: s})
		if err := p1.Register("report", 100*time.Millisecond, true, func(context.Context) error {
			if calls.Add(1) == 1 {
				return errors.New("disk full")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = p1.Run(ctx) }()
		testenv.Eventually(t, 60*time.Second, "two runs recorded", func() bool {
			runs, err := s.ListRuns(context.Background(), "report", 0, 10)
			return err == nil && len(runs) >= 2
		})
		cancel()
		<-done
		// Older history, recorded directly, to fill more than one page.
		old := make([]jobs.JobRun, 70)
		for i := range old {
			old[i] = jobs.JobRun{Job: "report", At: time.Now().Add(-time.Hour), Duration: time.Millisecond}
		}
		if err := s.RecordRuns(context.Background(), old, nil); err != nil {
			t.Fatal(err)
		}
		stored, err := s.ListRuns(context.Background(), "report", 0, jobs.MaxPage)
		if err != nil {
			t.Fatal(err)
		}

		p2 := jobs.NewProcessor(jobs.Config{Store: s})
		if err := p2.Register("report", time.Hour, false, noopJob); err != nil {
			t.Fatal(err)
		}
		runProcessor(t, p2)
		h, _, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
		srv := httptest.NewServer(New(Deps{Hub: h, Jobs: p2, History: p2}))
		defer srv.Close()

		d := get(t, srv, "/jobs/report", http.StatusOK)
		if n := d.Find(`[data-testid="run"]`).Length(); n != jobs.DefaultPage {
			t.Errorf("first page has %d runs, want %d", n, jobs.DefaultPage)
		}
		if d.Find(`[data-testid="job-card"]`).Length() != 1 {
			t.Error("no live job card on the job page")
		}
		ids, pages := follow(t, srv, "/jobs/report", `[data-testid="run"]`, "data-run")
		var want []string
		for _, r := range stored {
			want = append(want, strconv.FormatInt(r.ID, 10))
		}
		if !slices.Equal(ids, want) || pages != 2 {
			t.Errorf("%d pages of runs %v, want 2 pages of %v", pages, ids, want)
		}
		errs := []string{}
		for _, r := range stored {
			if r.Error != "" {
				errs = append(errs, r.Error)
			}
		}
		if !slices.Equal(errs, []string{"disk full"}) {
			t.Errorf("recorded errors %q", errs)
		}
		older := get(t, srv, "/jobs/report?before="+want[jobs.DefaultPage-1], http.StatusOK)
		if older.Find(`[data-testid="newest-page"]`).Length() != 1 {
			t.Error("an older page has no link back to the newest")
		}
		if got := older.Find(`[data-testid="run-error"]`).Text(); got != "disk full" {
			t.Errorf("the older page shows error %q, want the first run's", got)
		}
		get(t, srv, "/jobs/report?before=x", http.StatusBadRequest)
		get(t, srv, "/jobs/other", http.StatusNotFound)
	})
}

func noopJob(context.Context) error { return nil }

// TestWorkPageFromTheStoreAfterARestart runs items with one processor, then
// serves /work from a second one and a fresh hub that saw no work events.
func TestWorkPageFromTheStoreAfterARestart(t *testing.T) {
	eachDB(t, func(t *testing.T, s jobs.Store) {
		p1 := jobs.NewProcessor(jobs.Config{Store: s})
		opts := jobs.KindOptions{MaxAttempts: 1, BreakerFailures: -1}
		if err := p1.RegisterKind("email", func(context.Context, jobs.WorkItem) error { return errors.New("smtp down") }, opts); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = p1.Run(ctx) }()
		it, err := p1.Enqueue(context.Background(), jobs.NewWork{Kind: "email"})
		if err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 60*time.Second, "email fails", func() bool {
			w, err := s.GetWork(context.Background(), it.ID)
			return err == nil && w.State == jobs.WorkFailed
		})
		cancel()
		<-done
		base := time.Now().Add(-time.Hour).UTC()
		for i := range 60 {
			at := base.Add(time.Duration(i) * time.Second)
			w := jobs.WorkItem{ID: fmt.Sprintf("D%02d", i), Kind: "report.pdf", State: jobs.WorkDone, Attempts: 1, MaxAttempts: 5, CreatedAt: at, UpdatedAt: at, RunAt: at}
			if err := jobs.ImportWork(context.Background(), s, w); err != nil {
				t.Fatal(err)
			}
		}

		p2 := jobs.NewProcessor(jobs.Config{Store: s})
		h, _, _ := testHub(t, HubConfig{FlushEvery: time.Hour})
		srv := httptest.NewServer(New(Deps{Hub: h, History: p2}))
		defer srv.Close()

		cases := []struct {
			path      string
			wantItems int
			wantPages int
		}{
			{"/work", 61, 2},
			{"/work?state=failed", 1, 1},
			{"/work?state=done", 60, 2},
			{"/work?kind=email", 1, 1},
			{"/work?state=done&kind=email", 0, 1},
		}
		for _, c := range cases {
			ids, pages := follow(t, srv, c.path, `[data-testid="work-item"]`, "data-id")
			if len(ids) != c.wantItems || pages != c.wantPages || len(ids) != len(uniq(ids)) {
				t.Errorf("%s: %d items on %d pages, want %d on %d", c.path, len(ids), pages, c.wantItems, c.wantPages)
			}
		}
		d := get(t, srv, "/work?state=failed", http.StatusOK)
		item := d.Find(`[data-testid="work-item"]`)
		if item.AttrOr("data-id", "") != it.ID || item.Find(`[data-testid="attempts"]`).Text() != "1 of 1" || !strings.Contains(item.Text(), "smtp down") {
			t.Errorf("failed item: %q", item.Text())
		}
		tabs := d.Find(`[data-testid="work-states"]`).Text()
		for _, want := range []string{"failed · 1", "done · 60", "pending · 0"} {
			if !strings.Contains(tabs, want) {
				t.Errorf("tabs %q lack %q", tabs, want)
			}
		}
		if cur := d.Find(`[data-testid="work-states"] [aria-current="page"]`).Text(); cur != "failed · 1" {
			t.Errorf("current tab %q", cur)
		}
		if d.Find(`[data-testid="no-work"]`).Length() != 0 {
			t.Error("failed tab says there is no work")
		}
		get(t, srv, "/work?state=bogus", http.StatusBadRequest)
		get(t, srv, "/work?before=nope", http.StatusBadRequest)
		if d := get(t, srv, "/work?kind=fax", http.StatusOK); d.Find(`[data-testid="no-work"]`).Length() != 1 {
			t.Error("an empty filter does not say so")
		}
	})
}

func uniq(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}

func TestOutboxPages(t *testing.T) {
	srv, _, fo, _ := uiServer(t)
	d := get(t, srv, "/outbox?status=dead&topic=orders.created", http.StatusOK)
	if fo.lastF.Status != outbox.StatusDead || fo.lastF.Topic != "orders.created" {
		t.Errorf("filter passed to List: %+v", fo.lastF)
	}
	rows := d.Find(`[data-testid="message"]`)
	if rows.Length() != 1 {
		t.Fatalf("%d rows, want 1", rows.Length())
	}
	if confirm, _ := rows.Find(`[data-testid="delete"]`).Attr("hx-confirm"); confirm == "" {
		t.Error("Delete is not confirmed")
	}
	if confirm, _ := d.Find(`[data-testid="retry-all"]`).Attr("hx-confirm"); !strings.Contains(confirm, "orders.created") {
		t.Errorf("Retry all's confirmation = %q", confirm)
	}
	if d.Find(`[data-testid="outbox-stats"]`).Length() != 1 {
		t.Error("no stats panel on the outbox page")
	}
	get(t, srv, "/outbox?status=bogus", http.StatusBadRequest)
	get(t, srv, "/outbox?before=x", http.StatusBadRequest)

	d = get(t, srv, "/outbox/m-dead", http.StatusOK)
	if got := d.Find(`[data-testid="payload"]`).Text(); !strings.Contains(got, `"order": 42`) {
		t.Errorf("payload = %q", got)
	}
	if d.Find(`[data-testid="attempt"]`).Length() != 1 || d.Find(`[data-testid="headers"]`).Length() != 1 {
		t.Error("attempts or headers missing")
	}
	get(t, srv, "/outbox/nope", http.StatusNotFound)
}

func TestOutboxPagesWithoutAnOutbox(t *testing.T) {
	h, _, _ := testHub(t, HubConfig{})
	srv := httptest.NewServer(New(Deps{Hub: h}))
	defer srv.Close()
	get(t, srv, "/outbox", http.StatusNotFound)
	resp, err := http.Post(srv.URL+"/ui/outbox/x/delete", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("outbox button without an outbox: %d", resp.StatusCode)
	}
}

func TestWallPageIsReadOnly(t *testing.T) {
	srv, _, _, _ := uiServer(t)
	d := get(t, srv, "/wall", http.StatusOK)
	if n := d.Find("button, form, [hx-post]").Length(); n != 0 {
		t.Errorf("the wall has %d controls", n)
	}
	if _, hidden := d.Find(`[data-testid="banner"]`).Attr("hidden"); !hidden {
		t.Error("the lost-connection banner shows on first load")
	}
	if ws, _ := d.Find("body").Attr("ws-connect"); ws != "/ws?view=wall&topics=overview" {
		t.Errorf("wall ws-connect = %q", ws)
	}
}

// TestPagesRefuseBadParametersLikeTheirAPITwins: a bad filter or cursor on
// a page is the API's 400 with its words, as an error page naming the parameter for a
// browser and as the API's JSON for a client that asks for JSON or htmx.
func TestPagesRefuseBadParametersLikeTheirAPITwins(t *testing.T) {
	srv, _, _, _ := uiServer(t)
	cases := []struct{ page, field string }{
		{"/outbox?status=bogus", "status"},
		{"/outbox?before=zz", "before"},
		{"/outbox?topic=a%00", "topic"},
		{"/work?state=bogus", "state"},
		{"/work?before=zz", "before"},
		{"/jobs/report?before=zz", "before"},
	}
	for _, c := range cases {
		t.Run(c.page, func(t *testing.T) {
			d := get(t, srv, c.page, http.StatusBadRequest)
			p := d.Find(`[data-testid="problem"]`)
			if p.AttrOr("data-status", "") != "400" {
				t.Fatalf("no 400 problem page: %q", d.Text())
			}
			if text := p.Find(`[data-testid="problem-text"]`).Text(); !strings.Contains(text, c.field) {
				t.Errorf("the page's error %q does not name %q", text, c.field)
			}
			for _, hdr := range [][2]string{{"Accept", "application/json"}, {"HX-Request", "true"}} {
				req, err := http.NewRequest(http.MethodGet, srv.URL+c.page, nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set(hdr[0], hdr[1])
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var got apiError
				err = json.NewDecoder(resp.Body).Decode(&got)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || err != nil || got.Field != c.field || got.Error == "" {
					t.Errorf("%s: %s: %d %+v (%v), want 400 naming %q", hdr[0], c.page, resp.StatusCode, got, err, c.field)
				}
			}
		})
	}
}
