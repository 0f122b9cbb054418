package main

// OpenTelemetry for the interop server, used by trimicro's tracing interop test
// (tests/observability/test_go_tracing.py). With INTEROP_OTEL=1 the server
// installs go-micro's own wrapper/trace/opentelemetry handler and client
// wrappers with an SDK tracer provider (no exporter: spans are made and their
// context propagated) and the W3C trace-context propagator; with
// INTEROP_RELAY=<service> Greeter.Hello calls <service>'s Greeter.Hello
// before answering, so a trace can go Python -> Go -> Python.

import (
	"context"
	"os"

	micro "go-micro.dev/v5"
	"go-micro.dev/v5/client"
	otelwrap "go-micro.dev/v5/wrapper/trace/opentelemetry"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	greeter "trimicro.test/interop/go/proto"
)

// otelOptions are the micro.Options INTEROP_OTEL=1 adds (none otherwise).
func otelOptions() []micro.Option {
	if os.Getenv("INTEROP_OTEL") != "1" {
		return nil
	}
	otel.SetTracerProvider(sdktrace.NewTracerProvider())
	otel.SetTextMapPropagator(propagation.TraceContext{})
	return []micro.Option{
		micro.WrapHandler(otelwrap.NewHandlerWrapper()),
		micro.WrapClient(otelwrap.NewClientWrapper()),
	}
}

// traceIDs reports the span the handler runs in ("" when not tracing).
func traceIDs(ctx context.Context) (traceID, spanID string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	return sc.TraceID().String(), sc.SpanID().String()
}

// relay calls INTEROP_RELAY's Greeter.Hello with the handler's context (its
// metadata carries the trace); "" and nil when no relay is configured.
func relay(ctx context.Context, cl client.Client, name string) (string, error) {
	target := os.Getenv("INTEROP_RELAY")
	if target == "" || cl == nil {
		return "", nil
	}
	rsp := &greeter.HelloResponse{}
	req := cl.NewRequest(target, "Greeter.Hello", &greeter.HelloRequest{Name: name}, client.WithContentType("application/json"))
	if err := cl.Call(ctx, req, rsp); err != nil {
		return "", err
	}
	return rsp.Greeting, nil
}
