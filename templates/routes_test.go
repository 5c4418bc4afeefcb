package templates

import (
	"testing"

	"github.com/PuerkitoBio/goquery"
	"github.com/canalhq/canal/outbox"
)

func TestOutboxPageShowsRoutesBesideTopics(t *testing.T) {
	routes := []Route{
		{Topic: "order.placed", To: "RabbitMQ amqp://mq:5672 exchange per topic"},
		{Topic: "*", To: "Redis redis://r:6379 streams canal:<topic> (MAXLEN ~100000)"},
	}
	recs := []outbox.Record{{ID: "a", Topic: "order.placed", Status: outbox.StatusPending}, {ID: "b", Topic: "invoice.sent", Status: outbox.StatusDead}}
	d := render(t, OutboxPage(nil, OutboxFilter{}, outbox.Page{Items: recs}, 1, routes))

	table := map[string]string{}
	d.Find(`[data-testid="routes"] [data-testid="route-topic"]`).Each(func(_ int, s *goquery.Selection) {
		table[s.Text()] = s.Next().Text()
	})
	if table["order.placed"] != routes[0].To || table["every other topic"] != routes[1].To || len(table) != 2 {
		t.Errorf("routes card = %v", table)
	}
	got := map[string]string{}
	d.Find(`[data-testid="message"]`).Each(func(_ int, s *goquery.Selection) {
		got[s.AttrOr("data-id", "")] = s.Find(`[data-testid="route"]`).Text()
	})
	if got["a"] != "→ "+routes[0].To || got["b"] != "→ "+routes[1].To {
		t.Errorf("route beside each topic = %v", got)
	}

	// Without routes (no publisher) nothing is shown.
	d = render(t, OutboxPage(nil, OutboxFilter{}, outbox.Page{Items: recs}, 1, nil))
	if n := d.Find(`[data-testid="routes"], [data-testid="route"]`).Length(); n != 0 {
		t.Errorf("%d route elements without routes", n)
	}
}
