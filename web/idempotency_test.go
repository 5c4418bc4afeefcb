package web

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/canalhq/canal/internal/idempotency"
	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
	"github.com/canalhq/canal/server/demo"
	"github.com/canalhq/canal/testenv"
	"gorm.io/gorm"
)

// intake is the API over one database with the work queue, the demo's
// orders and the Idempotency-Key store, none of them running: items and
// messages stay where they were written, to be counted.
type intake struct {
	db     *gorm.DB
	proc   *jobs.Processor
	orders *demo.Orders
	store  *idempotency.Store
}

func newIntake(t *testing.T, open func(testing.TB) *gorm.DB) *intake {
	t.Helper()
	ctx := context.Background()
	db := open(t)
	for _, m := range []func(context.Context, *gorm.DB) error{jobs.Migrate, outbox.Migrate, demo.Migrate, idempotency.Migrate} {
		if err := m(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	s, err := jobs.NewStore(db)
	if err != nil {
		t.Fatal(err)
	}
	p := jobs.NewProcessor(jobs.Config{Store: s})
	if err := p.RegisterKind("email", func(context.Context, jobs.WorkItem) error { return nil }, jobs.KindOptions{}); err != nil {
		t.Fatal(err)
	}
	relay, err := outbox.New(db, outbox.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return &intake{db: db, proc: p, orders: demo.NewOrders(relay, nil, slog.New(slog.DiscardHandler)),
		store: idempotency.New(db, idempotency.Config{})}
}

// deps are the API's dependencies; work and orders may be wrapped.
func (in *intake) deps(work WorkQueue, orders OrderPlacer) Deps {
	if work == nil {
		work = in.proc
	}
	if orders == nil {
		orders = in.orders
	}
	return Deps{Logger: slog.New(slog.DiscardHandler), Work: work, Orders: orders, Idempotency: in.store}
}

// counts are the rows a write makes: work items, orders and outbox
// messages, and Idempotency-Key records.
type counts struct{ work, orders, messages, keys int64 }

func (in *intake) count(t *testing.T) counts {
	t.Helper()
	var c counts
	for _, q := range []struct {
		n   *int64
		sql string
	}{
		{&c.work, `SELECT count(*) FROM canal_queue_items WHERE queue = 'work'`},
		{&c.messages, `SELECT count(*) FROM canal_queue_items WHERE queue = 'outbox'`},
		{&c.orders, `SELECT count(*) FROM demo_orders`},
		{&c.keys, `SELECT count(*) FROM canal_idempotency_keys`},
	} {
		if err := in.db.Raw(q.sql).Scan(q.n).Error; err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// made is how many business rows route's write makes.
func (c counts) made(route string) int64 {
	if route == "/api/orders" {
		if c.orders != c.messages {
			return -1 // an order without its message, or the reverse
		}
		return c.orders
	}
	return c.work
}

// intakeRoutes are the two idempotent writes, each with two bodies.
var intakeRoutes = []struct {
	path, body, other, reindented string
	status                        int
	idField                       string
}{
	{"/api/work", `{"kind":"email","payload":{"to":"ana"}}`, `{"kind":"email","payload":{"to":"bob"}}`,
		"{ \"kind\": \"email\",\n  \"payload\": {\"to\": \"ana\"} }", http.StatusAccepted, `"id"`},
	{"/api/orders", `{"customer":"ada","amount":12.5}`, `{"customer":"ada","amount":13}`,
		"{\n  \"customer\": \"ada\",\n  \"amount\": 12.5\n}", http.StatusCreated, `"orderId"`},
}

func eachIntakeDB(t *testing.T, f func(t *testing.T, open func(testing.TB) *gorm.DB)) {
	for _, d := range []struct {
		name string
		open func(testing.TB) *gorm.DB
	}{{"sqlite", testenv.SQLite}, {"postgres", testenv.Postgres}} {
		t.Run(d.name, func(t *testing.T) { f(t, d.open) })
	}
}

// keyed sends a JSON POST with the given Idempotency-Key values.
func keyed(t *testing.T, e http.Handler, path, body string, keys ...string) apiAnswer {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Host = "127.0.0.1"
	req.Header.Set("Content-Type", "application/json")
	for _, k := range keys {
		req.Header.Add("Idempotency-Key", k)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("POST %s: content type %q of %d %s", path, ct, rec.Code, rec.Body)
	}
	return apiAnswer{status: rec.Code, header: rec.Header(), raw: rec.Body.String()}
}

// The same key and body get the first answer again and make nothing more;
// the key with another body is a 422; a bad key a 400 that writes
// nothing; a refused body records nothing, so its key stays free.
func TestIdempotencyKeyAPI(t *testing.T) {
	eachIntakeDB(t, func(t *testing.T, open func(testing.TB) *gorm.DB) {
		for _, rt := range intakeRoutes {
			t.Run(rt.path, func(t *testing.T) {
				in := newIntake(t, open)
				e := New(in.deps(nil, nil))
				first := keyed(t, e, rt.path, rt.body, "k-1")
				if first.status != rt.status || !strings.Contains(first.raw, rt.idField) || first.header.Get("Idempotent-Replayed") != "" {
					t.Fatalf("first: %d %s (replayed %q)", first.status, first.raw, first.header.Get("Idempotent-Replayed"))
				}
				type step struct {
					name   string
					body   string
					keys   []string
					status int
					field  string // of the JSON error ("-": any), "" for a replay
				}
				steps := []step{
					{"replay", rt.body, []string{"k-1"}, rt.status, ""},
					{"replay, body re-indented", rt.reindented, []string{"k-1"}, rt.status, ""},
					{"same key, another body", rt.other, []string{"k-1"}, http.StatusUnprocessableEntity, "Idempotency-Key"},
					{"key too long", rt.other, []string{strings.Repeat("k", idempotency.MaxKeyLen+1)}, http.StatusBadRequest, "Idempotency-Key"},
					{"control character", rt.other, []string{"k\x01"}, http.StatusBadRequest, "Idempotency-Key"},
					{"tab", rt.other, []string{"k\tk"}, http.StatusBadRequest, "Idempotency-Key"},
					{"not ASCII", rt.other, []string{"clé"}, http.StatusBadRequest, "Idempotency-Key"},
					{"empty", rt.other, []string{""}, http.StatusBadRequest, "Idempotency-Key"},
					{"two keys", rt.other, []string{"k-2", "k-3"}, http.StatusBadRequest, "Idempotency-Key"},
					{"bad body", `{"kind":`, []string{"k-4"}, http.StatusBadRequest, "-"},
				}
				for _, s := range steps {
					a := keyed(t, e, rt.path, s.body, s.keys...)
					if a.status != s.status {
						t.Errorf("%s: %d %s, want %d", s.name, a.status, a.raw, s.status)
						continue
					}
					if s.field == "" {
						if a.raw != first.raw || a.header.Get("Idempotent-Replayed") != "true" || a.header.Get("Location") != first.header.Get("Location") {
							t.Errorf("%s: %s (replayed %q, Location %q), want %s (Location %q) replayed",
								s.name, a.raw, a.header.Get("Idempotent-Replayed"), a.header.Get("Location"), first.raw, first.header.Get("Location"))
						}
						continue
					}
					var body apiError
					a.decode(t, &body)
					if (body.Field != s.field && s.field != "-") || body.Error == "" {
						t.Errorf("%s: %s, want an error naming %s", s.name, a.raw, s.field)
					}
				}
				if c := in.count(t); c.made(rt.path) != 1 || c.keys != 1 {
					t.Fatalf("after the retries: %+v, want one write and one key", c)
				}
				// The key of the refused body was not spent.
				if a := keyed(t, e, rt.path, rt.other, "k-4"); a.status != rt.status || a.header.Get("Idempotent-Replayed") != "" {
					t.Fatalf("k-4 after its bad body: %d %s", a.status, a.raw)
				}
				// Without a key each request is a new write.
				for range 2 {
					if a := keyed(t, e, rt.path, rt.body); a.status != rt.status {
						t.Fatalf("without a key: %d %s", a.status, a.raw)
					}
				}
				if c := in.count(t); c.made(rt.path) != 4 || c.keys != 2 {
					t.Fatalf("at the end: %+v, want 4 writes and 2 keys", c)
				}
			})
		}
	})
}

// gatedWork and gatedOrders hold a keyed write inside its transaction
// until released.
type gate struct {
	inside  chan struct{}
	release chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{inside: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) wait() {
	g.once.Do(func() { close(g.inside) })
	<-g.release
}

type gatedWork struct {
	*jobs.Processor
	g *gate
}

func (w gatedWork) EnqueueTx(ctx context.Context, tx *gorm.DB, nw jobs.NewWork) (jobs.WorkItem, error) {
	w.g.wait()
	return w.Processor.EnqueueTx(ctx, tx, nw)
}

type gatedOrders struct {
	*demo.Orders
	g *gate
}

func (o gatedOrders) PlaceOrderTx(ctx context.Context, tx *gorm.DB, customer string, cents int64) (string, string, error) {
	o.g.wait()
	return o.Orders.PlaceOrderTx(ctx, tx, customer, cents)
}

// A request whose key's first request is still being handled is a 409
// (with Retry-After); once the first is answered, a retry replays it.
func TestIdempotencyKeyInProgress(t *testing.T) {
	eachIntakeDB(t, func(t *testing.T, open func(testing.TB) *gorm.DB) {
		for _, rt := range intakeRoutes {
			t.Run(rt.path, func(t *testing.T) {
				in := newIntake(t, open)
				g := newGate()
				d := in.deps(gatedWork{in.proc, g}, gatedOrders{in.orders, g})
				e := New(d)
				done := make(chan apiAnswer, 1)
				go func() { done <- keyed(t, e, rt.path, rt.body, "busy") }()
				<-g.inside
				a := keyed(t, e, rt.path, rt.body, "busy")
				var body apiError
				a.decode(t, &body)
				if a.status != http.StatusConflict || body.Field != "Idempotency-Key" || a.header.Get("Retry-After") == "" {
					t.Errorf("while in progress: %d %s (Retry-After %q), want 409 naming the key", a.status, a.raw, a.header.Get("Retry-After"))
				}
				close(g.release)
				first := <-done
				if first.status != rt.status {
					t.Fatalf("first: %d %s", first.status, first.raw)
				}
				if again := keyed(t, e, rt.path, rt.body, "busy"); again.status != rt.status || again.raw != first.raw {
					t.Fatalf("retry: %d %s, want %s", again.status, again.raw, first.raw)
				}
				if c := in.count(t); c.made(rt.path) != 1 {
					t.Fatalf("%+v, want one write", c)
				}
			})
		}
	})
}

// dropFirst is a client's transport that loses the answers of the first n
// requests after the server has handled them, as a dropped connection
// does.
type dropFirst struct {
	mu sync.Mutex
	n  int
}

var errDropped = errors.New("connection reset by peer (test)")

func (d *dropFirst) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	drop := d.n > 0
	d.n--
	d.mu.Unlock()
	if drop {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil, errDropped
	}
	return resp, nil
}

// A client that retries after losing the answer, and keeps retrying from
// several goroutines at once, makes exactly one item or order, and every
// answer it reads names that one.
func TestIdempotencyKeyClientRetriesAfterDroppedResponse(t *testing.T) {
	eachIntakeDB(t, func(t *testing.T, open func(testing.TB) *gorm.DB) {
		for _, rt := range intakeRoutes {
			t.Run(rt.path, func(t *testing.T) {
				in := newIntake(t, open)
				srv := httptest.NewServer(New(in.deps(nil, nil)))
				defer srv.Close()
				client := &http.Client{Transport: &dropFirst{n: 3}}
				post := func() (int, string, error) {
					req, err := http.NewRequest(http.MethodPost, srv.URL+rt.path, strings.NewReader(rt.body))
					if err != nil {
						return 0, "", err
					}
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Idempotency-Key", "order-7f3a")
					resp, err := client.Do(req)
					if err != nil {
						return 0, "", err
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					return resp.StatusCode, string(b), err
				}
				// One client, retrying until it reads an answer.
				var answer string
				for try := 0; answer == ""; try++ {
					status, body, err := post()
					switch {
					case errors.Is(err, errDropped):
						continue
					case err != nil:
						t.Fatal(err)
					case status != rt.status:
						t.Fatalf("try %d: %d %s", try, status, body)
					}
					answer = body
				}
				// Many retries at once: each is the answer or a 409.
				var wg sync.WaitGroup
				for range 8 {
					wg.Go(func() {
						status, body, err := post()
						switch {
						case err != nil:
							t.Error(err)
						case status == http.StatusConflict:
						case status != rt.status || body != answer:
							t.Errorf("concurrent retry: %d %s, want %s", status, body, answer)
						}
					})
				}
				wg.Wait()
				if c := in.count(t); c.made(rt.path) != 1 || c.keys != 1 {
					t.Fatalf("%+v, want exactly one write and its key", c)
				}
			})
		}
	})
}

// The key's record and the write are one transaction: when recording the
// answer fails after the item (or order and message) was written, neither
// remains, and the key can be used again.
func TestIdempotencyKeyRecordAndWriteAreOneTransaction(t *testing.T) {
	eachIntakeDB(t, func(t *testing.T, open func(testing.TB) *gorm.DB) {
		for _, rt := range intakeRoutes {
			t.Run(rt.path, func(t *testing.T) {
				in := newIntake(t, open)
				failAnswers(t, in.db)
				e := New(in.deps(nil, nil))
				if a := keyed(t, e, rt.path, rt.body, "k"); a.status != http.StatusInternalServerError {
					t.Fatalf("with the record failing: %d %s, want 500", a.status, a.raw)
				}
				if c := in.count(t); c != (counts{}) {
					t.Fatalf("after a failed record: %+v, want nothing written", c)
				}
				allowAnswers(t, in.db)
				a := keyed(t, e, rt.path, rt.body, "k")
				if a.status != rt.status || a.header.Get("Idempotent-Replayed") != "" {
					t.Fatalf("the key again: %d %s", a.status, a.raw)
				}
				if c := in.count(t); c.made(rt.path) != 1 || c.keys != 1 {
					t.Fatalf("%+v, want one write and its key", c)
				}
			})
		}
	})
}

// failAnswers makes recording a key's answer (the record's update, after
// the request's write) fail; allowAnswers undoes it.
func failAnswers(t *testing.T, db *gorm.DB) {
	t.Helper()
	stmts := []string{`CREATE TRIGGER idem_fail BEFORE UPDATE ON canal_idempotency_keys
		BEGIN SELECT RAISE(ABORT, 'answer refused (test)'); END`}
	if db.Dialector.Name() == "postgres" {
		stmts = []string{
			`CREATE FUNCTION idem_fail() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN RAISE EXCEPTION 'answer refused (test)'; END $$`,
			`CREATE TRIGGER idem_fail BEFORE UPDATE ON canal_idempotency_keys
			FOR EACH ROW EXECUTE FUNCTION idem_fail()`,
		}
	}
	for _, s := range stmts {
		if err := db.Exec(s).Error; err != nil {
			t.Fatal(err)
		}
	}
}

func allowAnswers(t *testing.T, db *gorm.DB) {
	t.Helper()
	s := `DROP TRIGGER idem_fail`
	if db.Dialector.Name() == "postgres" {
		s = `DROP TRIGGER idem_fail ON canal_idempotency_keys`
	}
	if err := db.Exec(s).Error; err != nil {
		t.Fatal(err)
	}
}

// Without a store, or for a queue that cannot write in a transaction, a
// keyed request is refused rather than served without its guarantee.
func TestIdempotencyKeyWithoutStore(t *testing.T) {
	in := newIntake(t, testenv.SQLite)
	d := in.deps(nil, nil)
	d.Idempotency = nil
	e := New(d)
	for _, rt := range intakeRoutes {
		if a := keyed(t, e, rt.path, rt.body, "k"); a.status != http.StatusNotImplemented || !strings.Contains(a.raw, "Idempotency-Key") {
			t.Errorf("%s without a store: %d %s, want 501", rt.path, a.status, a.raw)
		}
		if a := keyed(t, e, rt.path, rt.body, "bad\x00"); a.status != http.StatusBadRequest {
			t.Errorf("%s with a bad key and no store: %d %s, want 400", rt.path, a.status, a.raw)
		}
	}
	if c := in.count(t); c != (counts{}) {
		t.Fatalf("%+v written", c)
	}
}
