// Package tracing connects Canal to OpenTelemetry: a provider that exports
// only when the standard OTEL_* variables ask for it, and the outbox's
// dispatch span, linked to the request that added the message through the
// message's W3C traceparent header.
package tracing

import (
	"context"
	"fmt"
	"io"

	"github.com/canalhq/canal/outbox"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Setup returns the tracer provider Canal uses and a function that flushes
// and stops it. With none of OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT
// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set (or OTEL_TRACES_EXPORTER=none)
// nothing is recorded or sent, and trace context still passes through from a
// request's traceparent to its messages. "otlp" exports over OTLP/HTTP as
// the OTEL_EXPORTER_OTLP_* variables say; "console" writes spans to w.
func Setup(ctx context.Context, getenv func(string) string, w io.Writer) (trace.TracerProvider, func(context.Context) error, error) {
	off := func(context.Context) error { return nil }
	kind := getenv("OTEL_TRACES_EXPORTER")
	if kind == "" && (getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "") {
		kind = "otlp"
	}
	var exp sdktrace.SpanExporter
	var err error
	switch kind {
	case "", "none":
		return noop.NewTracerProvider(), off, nil
	case "otlp":
		exp, err = otlptracehttp.New(ctx) // reads OTEL_EXPORTER_OTLP_* itself
	case "console":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(w))
	default:
		return nil, off, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", kind)
	}
	if err != nil {
		return nil, off, fmt.Errorf("tracing exporter %s: %w", kind, err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "canal"
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(name))),
	)
	return tp, tp.Shutdown, nil
}

var traceContext = propagation.TraceContext{}

// Publisher wraps next so that every dispatch is a span ("outbox.dispatch
// <topic>") linked to the span of the request that added the message, read
// from its traceparent header. A link, not a parent: the dispatch happens
// later, maybe many times, in the relay's own work.
func Publisher(tp trace.TracerProvider, next outbox.Publisher) outbox.Publisher {
	tracer := tp.Tracer("github.com/canalhq/canal/outbox")
	return outbox.PublisherFunc(func(ctx context.Context, d outbox.Delivery) error {
		opts := []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.destination.name", d.Topic),
				attribute.String("messaging.message.id", d.ID),
				attribute.Int("canal.outbox.attempt", d.Attempt),
			),
		}
		if tpHeader := d.Headers[outbox.HeaderTraceparent]; tpHeader != "" {
			rctx := traceContext.Extract(context.Background(), propagation.MapCarrier{"traceparent": tpHeader})
			if sc := trace.SpanContextFromContext(rctx); sc.IsValid() {
				opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
			}
		}
		ctx, span := tracer.Start(ctx, "outbox.dispatch "+d.Topic, opts...)
		defer span.End()
		err := next.Publish(ctx, d)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	})
}
