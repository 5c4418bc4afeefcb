package web

import (
	"github.com/canalhq/canal/outbox"
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var traceContext = propagation.TraceContext{}

// tracing gives every request a server span, continuing the caller's
// traceparent, and puts the span's traceparent where outbox.Add finds it,
// so a message added by this request carries it to the relay's dispatch
// span. With the no-op provider nothing is recorded, and a caller's
// traceparent still reaches the message.
func tracing(tp trace.TracerProvider) echo.MiddlewareFunc {
	tracer := tp.Tracer("github.com/canalhq/canal/web")
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			ctx, span := tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route)))
			defer span.End()
			if span.SpanContext().IsValid() {
				carrier := propagation.MapCarrier{}
				traceContext.Inject(ctx, carrier)
				ctx = outbox.WithTraceparent(ctx, carrier["traceparent"])
			}
			c.SetRequest(r.WithContext(ctx))
			err := next(c)
			span.SetAttributes(attribute.Int("http.response.status_code", c.Response().Status))
			return err
		}
	}
}
