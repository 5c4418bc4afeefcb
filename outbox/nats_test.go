package outbox

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/canalhq/canal/testenv"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// embeddedNATS runs a JetStream server in the test process.
func embeddedNATS(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("embedded NATS did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

func TestJetStreamPublisher(t *testing.T) {
	servers := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"embedded", embeddedNATS},
		{"real", func(t *testing.T) string { return testenv.NATSURL(t) }},
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			url := srv.url(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// A stream of its own, so tests never touch a real CANAL stream.
			suffix := fmt.Sprintf("%d", time.Now().UnixNano())
			cfg := JetStreamConfig{Stream: "CANALTEST_" + suffix, SubjectPrefix: "canaltest" + suffix}
			p, err := DialJetStream(ctx, url, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()

			nc, err := nats.Connect(url)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			defer js.DeleteStream(context.Background(), cfg.Stream)

			d := Delivery{ID: "018f-one", Topic: "order.placed", Payload: []byte(`{"n":1}`), Headers: map[string]string{"traceparent": "00-x"}}
			// The relay may deliver a message twice; the stream keeps one.
			for range 2 {
				if err := p.Publish(ctx, d); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.Publish(ctx, Delivery{ID: "018f-two", Topic: "order.paid", Payload: []byte(`2`)}); err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(ctx, cfg.Stream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != 2 {
				t.Errorf("stream holds %d messages, want 2 (one duplicate dropped)", info.State.Msgs)
			}
			m, err := st.GetMsg(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if m.Subject != cfg.SubjectPrefix+".order.placed" || string(m.Data) != `{"n":1}` ||
				m.Header.Get(jetstream.MsgIDHeader) != d.ID || m.Header.Get("traceparent") != "00-x" {
				t.Errorf("stored %s %s %v", m.Subject, m.Data, m.Header)
			}
		})
	}
}
