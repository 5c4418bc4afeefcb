package server

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestHTTPTimeoutsCloseSlowAndIdleConnections: the server Run builds, with
// its timeouts shortened through Config, closes a connection whose body
// trickles in past the read timeout and a keep-alive connection left idle
// past the idle timeout.
func TestHTTPTimeoutsCloseSlowAndIdleConnections(t *testing.T) {
	cfg := Config{timeouts: httpTimeouts{ReadHeader: 300 * time.Millisecond, Read: 300 * time.Millisecond, Write: time.Second, Idle: 300 * time.Millisecond}}
	bodyErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			_, err := io.ReadAll(r.Body)
			bodyErr <- err
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	srv := newHTTPServer(h, slog.New(slog.NewTextHandler(io.Discard, nil)), cfg.timeouts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// closed reads what the server still sends and reports whether it then
	// closed the connection (EOF or reset) before our own, far longer,
	// deadline.
	closed := func(c net.Conn) error {
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return errors.New("the server kept the connection open")
		}
		return nil
	}

	t.Run("slow body", func(t *testing.T) {
		c := dial(t)
		if _, err := io.WriteString(c, "POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() { // a byte every 50 ms: never idle, never done
			for {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		select {
		case err := <-bodyErr:
			if err == nil {
				t.Error("the handler read a whole body that never came")
			}
		case <-time.After(60 * time.Second):
			t.Fatal("the slow body was still being read after 60 s")
		}
		if err := closed(c); err != nil {
			t.Error(err)
		}
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		c := dial(t)
		if _, err := io.WriteString(c, "GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "ok" || resp.Close {
			t.Fatalf("first request: %d %q close=%v", resp.StatusCode, b, resp.Close)
		}
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		n, err := br.Read(make([]byte, 1))
		if n != 0 || !(errors.Is(err, io.EOF) || err != nil && strings.Contains(err.Error(), "reset")) {
			t.Errorf("idle keep-alive connection: read %d bytes, %v; want it closed by the server", n, err)
		}
	})
}
