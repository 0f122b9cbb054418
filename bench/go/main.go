// Command gobench is the Go Micro v5 column of trimicro's benchmark (bench/run.py).
//
//	gobench server                       prints "PORT <n>", serves Greeter until killed
//	gobench client --address A --mode unary|bidi [--concurrency N] [--seconds S]
//	               [--max N] [--size BYTES]   prints one "RESULT {json}" line
//
// The server is a plain go-micro server (default http transport, mucp protocol, protobuf codec) with
// an in-memory registry: nothing is registered anywhere and no mDNS is sent. It logs nothing per call.
// The client dials --address directly (client.WithAddress), so discovery costs nothing, as in the
// Python columns. It can drive trimicro's mucp server too: both speak the same wire.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"go-micro.dev/v5/client"
	"go-micro.dev/v5/logger"
	"go-micro.dev/v5/registry"
	"go-micro.dev/v5/selector"
	"go-micro.dev/v5/server"

	greeter "trimicro.test/interop/go/proto"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gobench server | gobench client --address A ...")
		os.Exit(2)
	}
	// go-micro logs at info by default (start-up lines); keep stdout for our protocol lines.
	logger.DefaultLogger = logger.NewLogger(logger.WithLevel(logger.WarnLevel), logger.WithOutput(os.Stderr))
	switch os.Args[1] {
	case "server":
		runServer()
	case "client":
		runClient(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

// ---------------------------------------------------------------- server

type handler struct{}

func (handler) Hello(ctx context.Context, req *greeter.HelloRequest, rsp *greeter.HelloResponse) error {
	rsp.Greeting = "Hello " + req.Name
	return nil
}

func (handler) Fail(ctx context.Context, req *greeter.HelloRequest, rsp *greeter.HelloResponse) error {
	return fmt.Errorf("fail")
}

func (handler) Slow(ctx context.Context, req *greeter.SlowRequest, rsp *greeter.SlowResponse) error {
	return nil
}

func (handler) Stream(ctx context.Context, req *greeter.StreamRequest, stream greeter.Greeter_StreamStream) error {
	for i := int64(0); i < req.Count; i++ {
		if err := stream.Send(&greeter.StreamResponse{Count: i, Message: "hello"}); err != nil {
			return err
		}
	}
	return nil
}

func (handler) Sum(ctx context.Context, stream greeter.Greeter_SumStream) error {
	return nil
}

func (handler) Echo(ctx context.Context, stream greeter.Greeter_EchoStream) error {
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
}

func runServer() {
	srv := server.NewServer(
		server.Name("greeter"),
		server.Address("127.0.0.1:0"),
		server.Registry(registry.NewMemoryRegistry()),
	)
	if err := greeter.RegisterGreeterHandler(srv, handler{}); err != nil {
		fail(err)
	}
	if err := srv.Start(); err != nil {
		fail(err)
	}
	addr := srv.Options().Address
	fmt.Printf("PORT %s\n", addr[strings.LastIndex(addr, ":")+1:])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Stop()
}

// ---------------------------------------------------------------- client

func runClient(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	address := fs.String("address", "", "host:port to call directly")
	mode := fs.String("mode", "unary", "unary | bidi")
	concurrency := fs.Int("concurrency", 1, "concurrent callers (unary)")
	seconds := fs.Float64("seconds", 2, "time bound of the measurement")
	maxOps := fs.Int("max", 1_000_000, "count bound of the measurement")
	size := fs.Int("size", 0, "request name bytes (0: \"world\")")
	fs.Parse(args)
	if *address == "" {
		fail(fmt.Errorf("--address is required"))
	}
	reg := registry.NewMemoryRegistry()
	cl := client.NewClient(
		client.Registry(reg),
		client.Selector(selector.NewSelector(selector.Registry(reg))),
		client.PoolSize(*concurrency+8),
		client.RequestTimeout(30*time.Second),
		client.ContentType("application/protobuf"),
	)
	svc := greeter.NewGreeterService("greeter", cl)
	name := "world"
	if *size > 0 {
		name = strings.Repeat("x", *size)
	}
	opts := []client.CallOption{client.WithAddress(*address)}
	var result map[string]interface{}
	if *mode == "bidi" {
		result = bidi(svc, opts, *seconds, *maxOps)
	} else {
		result = unary(svc, opts, name, *concurrency, *seconds, *maxOps)
		if *size > 0 {
			result["mib_per_s"] = result["calls_per_s"].(float64) * float64(*size) / (1024 * 1024)
		}
	}
	b, _ := json.Marshal(result)
	fmt.Printf("RESULT %s\n", b)
}

func unary(svc greeter.GreeterService, opts []client.CallOption, name string, concurrency int, seconds float64, maxOps int) map[string]interface{} {
	ctx := context.Background()
	// Warm-up: one call opens and pools a connection (the Python drivers warm up the same way).
	if _, err := svc.Hello(ctx, &greeter.HelloRequest{Name: name}, opts...); err != nil {
		fail(err)
	}
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var mu sync.Mutex
	var all []time.Duration
	var firstErr error
	left := maxOps
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for {
				mu.Lock()
				stop := left <= 0 || firstErr != nil
				left--
				mu.Unlock()
				if stop || time.Now().After(deadline) {
					break
				}
				t := time.Now()
				rsp, err := svc.Hello(ctx, &greeter.HelloRequest{Name: name}, opts...)
				if err == nil && len(rsp.Greeting) != len(name)+6 {
					err = fmt.Errorf("bad greeting")
				}
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					break
				}
				lat = append(lat, time.Since(t))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if firstErr != nil {
		fail(firstErr)
	}
	out := stats(all)
	out["calls"] = len(all)
	out["elapsed"] = elapsed
	out["calls_per_s"] = float64(len(all)) / elapsed
	out["mib_per_s"] = 0.0
	return out
}

func bidi(svc greeter.GreeterService, opts []client.CallOption, seconds float64, maxOps int) map[string]interface{} {
	stream, err := svc.Echo(context.Background(), opts...)
	if err != nil {
		fail(err)
	}
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var lat []time.Duration
	start := time.Now()
	for seq := int64(0); seq < int64(maxOps) && time.Now().Before(deadline); seq++ {
		t := time.Now()
		if err := stream.Send(&greeter.EchoMessage{Text: "ping", Seq: seq}); err != nil {
			fail(err)
		}
		back, err := stream.Recv()
		if err != nil {
			fail(err)
		}
		if back.Seq != seq {
			fail(fmt.Errorf("out of order: %d != %d", back.Seq, seq))
		}
		lat = append(lat, time.Since(t))
	}
	elapsed := time.Since(start).Seconds()
	stream.Close()
	out := stats(lat)
	out["round_trips"] = len(lat)
	out["elapsed"] = elapsed
	out["rt_per_s"] = float64(len(lat)) / elapsed
	return out
}

func stats(lat []time.Duration) map[string]interface{} {
	if len(lat) == 0 {
		return map[string]interface{}{}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	return map[string]interface{}{
		"p50_us": us(lat[len(lat)/2]),
		"p99_us": us(lat[len(lat)*99/100]),
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gobench:", err)
	os.Exit(1)
}
