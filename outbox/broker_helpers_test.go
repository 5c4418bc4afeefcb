package outbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"

	"gorm.io/gorm"
)

// tcpProxy forwards connections to a broker so a test can cut them (a
// broker restart as the client sees it) or pause the broker's answers (a
// confirm that never comes) without touching the shared server.
type tcpProxy struct {
	ln     net.Listener
	target string
	closed chan struct{}
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  []net.Conn
	gate   chan struct{} // closed while answers flow; open while paused
	refuse bool          // Down: new connections are closed at once
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target, closed: make(chan struct{}), gate: make(chan struct{})}
	close(p.gate)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) Addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, b)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.pipe(b, c, false) }()
		go func() { defer p.wg.Done(); p.pipe(c, b, true) }()
	}
}

// pipe copies src to dst; answers (broker to client) wait at the gate.
func (p *tcpProxy) pipe(dst, src net.Conn, gated bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && gated {
			p.mu.Lock()
			g := p.gate
			p.mu.Unlock()
			select {
			case <-g:
			case <-p.closed:
				return
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Cut closes every open connection, as a broker restart would.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Down cuts every connection and refuses new ones until Up: the broker is
// down as its clients see it.
func (p *tcpProxy) Down() {
	p.mu.Lock()
	p.refuse = true
	p.mu.Unlock()
	p.Cut()
}

// Up accepts connections again.
func (p *tcpProxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = false
}

// Pause holds the broker's answers until Resume.
func (p *tcpProxy) Pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = make(chan struct{})
}

func (p *tcpProxy) Resume() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

func (p *tcpProxy) close() {
	select {
	case <-p.closed:
		return
	default:
	}
	close(p.closed)
	p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func uniqueName(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// addKeyed commits n messages of topic through Add, batch per transaction,
// cycling over nkeys keys, and returns the ids of each key in commit order.
func addKeyed(t testing.TB, r *Relay, topic string, nkeys, n int) map[string][]string {
	t.Helper()
	ctx := context.Background()
	byKey := map[string][]string{}
	for done := 0; done < n; {
		err := r.Transaction(ctx, func(tx *gorm.DB) error {
			for range min(100, n-done) {
				key := fmt.Sprintf("k%03d", done%nkeys)
				id, err := Add(WithTraceparent(ctx, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), tx,
					Message{Topic: topic, Key: key, Payload: map[string]int{"n": done}})
				if err != nil {
					return err
				}
				byKey[key] = append(byKey[key], id)
				done++
			}
			return nil
		})
		if err != nil {
			t.Fatalf("add: %v", err)
		}
	}
	return byKey
}

// consumed is what a de-duplicating consumer saw: each id once, in order of
// first arrival, and how many copies arrived in all.
type consumed struct {
	mu     sync.Mutex
	seen   map[string]bool
	order  map[string][]string // key -> ids in first-arrival order
	copies int
}

func newConsumed() *consumed {
	return &consumed{seen: map[string]bool{}, order: map[string][]string{}}
}

// add records one arrival and reports whether it was new.
func (c *consumed) add(id, key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.copies++
	if c.seen[id] {
		return false
	}
	c.seen[id] = true
	c.order[key] = append(c.order[key], id)
	return true
}

func (c *consumed) unique() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// check says what is missing or out of order against want (key -> ids in
// commit order).
func (c *consumed) check(want map[string][]string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	total := 0
	for key, ids := range want {
		total += len(ids)
		if got := c.order[key]; !slices.Equal(got, ids) {
			errs = append(errs, fmt.Errorf("key %s: got %d ids, want %d in commit order (first difference at %d)", key, len(got), len(ids), firstDiff(got, ids)))
		}
	}
	if len(c.seen) != total {
		errs = append(errs, fmt.Errorf("%d distinct ids arrived, want %d", len(c.seen), total))
	}
	return errors.Join(errs...)
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
