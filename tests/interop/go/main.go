// Command interop is a small Go Micro (go-micro.dev/v5) program used by
// trimicro's interop tests. One binary, three modes (plus events-publish and
// events-consume, go-micro's events/natsjs, in events.go):
//
//	interop server    [go-micro flags] [--name N] [--topic T] [--queue Q]
//	interop client    [go-micro flags] --service S --endpoint E [--request JSON] ...
//	interop publisher [go-micro flags] --topic T [--count N] ...
//
// Every mode accepts Go Micro's own flags and MICRO_* environment variables
// (--registry, --registry_address, --server_address, --broker,
// --broker_address, --transport, --client_request_timeout, ...), parsed by
// go-micro's cmd package, whose plugin tables already link go-micro's own
// registry/nats and transport/nats: `--registry nats --transport nats` (with
// --registry_address / --transport_address) puts a peer on NATS alone.
// Output is one JSON object per line on stdout; go-micro's own logging goes
// to stderr.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	micro "go-micro.dev/v5"
	"go-micro.dev/v5/client"
	raw "go-micro.dev/v5/codec/bytes"
	merrors "go-micro.dev/v5/errors"
	"go-micro.dev/v5/logger"
	"go-micro.dev/v5/metadata"
	"go-micro.dev/v5/server"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	greeter "trimicro.test/interop/go/proto"
)

var outMu sync.Mutex

// emit writes one JSON line to stdout.
func emit(v map[string]interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"event":"marshal_error","error":%q}`, err.Error()))
	}
	outMu.Lock()
	defer outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

// errJSON turns any error into Go Micro's error JSON shape.
func errJSON(err error) map[string]interface{} {
	if err == nil {
		return nil
	}
	e := merrors.Parse(err.Error())
	return map[string]interface{}{
		"id":     e.Id,
		"code":   e.Code,
		"detail": e.Detail,
		"status": e.Status,
	}
}

func pbJSON(m proto.Message) json.RawMessage {
	b, err := protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return json.RawMessage(fmt.Sprintf("%q", err.Error()))
	}
	return json.RawMessage(b)
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: interop server|client|publisher [flags]  (interop MODE --help for flags)")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	mode := os.Args[1]
	// go-micro's cmd parses os.Args; drop the mode word.
	os.Args = append([]string{os.Args[0] + " " + mode}, os.Args[2:]...)
	if lvl := os.Getenv("INTEROP_LOG_LEVEL"); lvl != "" {
		if l, err := logger.GetLevel(lvl); err == nil {
			logger.DefaultLogger = logger.NewLogger(logger.WithLevel(l), logger.WithOutput(os.Stderr))
		}
	} else {
		logger.DefaultLogger = logger.NewLogger(logger.WithOutput(os.Stderr))
	}
	switch mode {
	case "server":
		runServer()
	case "client":
		runClient()
	case "publisher":
		runPublisher()
	case "events-publish":
		runEventsPublish()
	case "events-consume":
		runEventsConsume()
	default:
		usage()
	}
}

// ---------------------------------------------------------------- server

type Greeter struct {
	name   string
	client client.Client // for INTEROP_RELAY (otel.go)
}

func (g *Greeter) Hello(ctx context.Context, req *greeter.HelloRequest, rsp *greeter.HelloResponse) error {
	md, _ := metadata.FromContext(ctx)
	ev := map[string]interface{}{"event": "hello", "name": req.Name, "metadata": md}
	if tid, sid := traceIDs(ctx); tid != "" {
		ev["trace_id"], ev["span_id"] = tid, sid
	}
	emit(ev)
	rsp.Greeting = "Hello " + req.Name
	relayed, err := relay(ctx, g.client, req.Name)
	if err != nil {
		return err
	}
	if relayed != "" {
		rsp.Greeting += " / " + relayed
	}
	return nil
}

func (g *Greeter) Fail(ctx context.Context, req *greeter.HelloRequest, rsp *greeter.HelloResponse) error {
	return merrors.BadRequest(g.name, "bad name %s", req.Name)
}

func (g *Greeter) Slow(ctx context.Context, req *greeter.SlowRequest, rsp *greeter.SlowResponse) error {
	start := time.Now()
	d := time.Duration(req.SleepMs) * time.Millisecond
	deadline, hasDeadline := ctx.Deadline()
	cancelled := false
	select {
	case <-time.After(d):
	case <-ctx.Done():
		cancelled = true
	}
	slept := time.Since(start)
	ev := map[string]interface{}{
		"event":        "slow",
		"sleep_ms":     req.SleepMs,
		"slept_ms":     slept.Milliseconds(),
		"cancelled":    cancelled,
		"has_deadline": hasDeadline,
	}
	if hasDeadline {
		ev["deadline_in_ms"] = deadline.Sub(start).Milliseconds()
	}
	if ctx.Err() != nil {
		ev["ctx_err"] = ctx.Err().Error()
	}
	emit(ev)
	rsp.Cancelled = cancelled
	rsp.SleptMs = slept.Milliseconds()
	return nil
}

func (g *Greeter) Stream(ctx context.Context, req *greeter.StreamRequest, stream greeter.Greeter_StreamStream) error {
	emit(map[string]interface{}{"event": "stream", "count": req.Count})
	if req.Count < 0 {
		// send one message, then fail: the error travels in the final frame
		stream.Send(&greeter.StreamResponse{Count: -1, Message: "before error"})
		return merrors.BadRequest(g.name, "negative count %d", req.Count)
	}
	for i := int64(0); i < req.Count; i++ {
		if err := stream.Send(&greeter.StreamResponse{Count: i, Message: fmt.Sprintf("msg %d", i)}); err != nil {
			emit(map[string]interface{}{"event": "stream_send_error", "error": err.Error()})
			return err
		}
	}
	return nil
}

func (g *Greeter) Sum(ctx context.Context, stream greeter.Greeter_SumStream) error {
	var total, n int64
	for {
		num, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			emit(map[string]interface{}{"event": "sum_recv_error", "error": err.Error()})
			return err
		}
		total += num.Value
		n++
	}
	emit(map[string]interface{}{"event": "sum", "sum": total, "count": n})
	return stream.SendMsg(&greeter.Total{Sum: total, Count: n})
}

func (g *Greeter) Echo(ctx context.Context, stream greeter.Greeter_EchoStream) error {
	n := 0
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			emit(map[string]interface{}{"event": "echo_recv_error", "error": err.Error()})
			return err
		}
		n++
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	emit(map[string]interface{}{"event": "echo_done", "count": n})
	return nil
}

// subscriber receives the decoded event; the raw form is printed by the
// subscriber wrapper below.
func onEvent(ctx context.Context, ev *greeter.Event) error {
	return nil
}

func subLogger(next server.SubscriberFunc) server.SubscriberFunc {
	return func(ctx context.Context, msg server.Message) error {
		ev := map[string]interface{}{
			"event":        "message",
			"topic":        msg.Topic(),
			"content_type": msg.ContentType(),
			"header":       msg.Header(),
			"body":         string(msg.Body()),
			"body_b64":     base64.StdEncoding.EncodeToString(msg.Body()),
		}
		if pm, ok := msg.Payload().(proto.Message); ok {
			ev["payload"] = pbJSON(pm)
		}
		emit(ev)
		return next(ctx, msg)
	}
}

func runServer() {
	var name, topic, queue string
	opts := append([]micro.Option{
		micro.Name("greeter-go"),
		micro.Flags(
			&cli.StringFlag{Name: "name", Usage: "service name (same as --server_name)", EnvVars: []string{"INTEROP_NAME"}},
			&cli.StringFlag{Name: "topic", Usage: "subscribe to this topic", EnvVars: []string{"INTEROP_TOPIC"}},
			&cli.StringFlag{Name: "queue", Usage: "subscriber queue (empty = broadcast)", EnvVars: []string{"INTEROP_QUEUE"}},
		),
		micro.Action(func(c *cli.Context) error {
			name, topic, queue = c.String("name"), c.String("topic"), c.String("queue")
			return nil
		}),
		micro.WrapSubscriber(subLogger),
	}, otelOptions()...)
	svc := micro.NewService(opts...)
	svc.Init()
	if name != "" {
		svc.Server().Init(server.Name(name))
	}
	sname := svc.Server().Options().Name
	if err := greeter.RegisterGreeterHandler(svc.Server(), &Greeter{name: sname, client: svc.Client()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if topic != "" {
		var opts []server.SubscriberOption
		if queue != "" {
			opts = append(opts, server.SubscriberQueue(queue))
		}
		if err := micro.RegisterSubscriber(topic, svc.Server(), onEvent, opts...); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	svc.Init(micro.AfterStart(func() error {
		o := svc.Server().Options()
		emit(map[string]interface{}{
			"event":          "started",
			"name":           o.Name,
			"id":             o.Id,
			"address":        o.Address,
			"registry":       o.Registry.String(),
			"broker":         o.Broker.String(),
			"broker_address": o.Broker.Address(),
			"transport":      o.Transport.String(),
			"topic":          topic,
			"queue":          queue,
		})
		return nil
	}))
	if err := svc.Run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	emit(map[string]interface{}{"event": "stopped"})
}

// ---------------------------------------------------------------- client

// typed request/response messages for the Greeter endpoints.
func messagesFor(endpoint string) (req, rsp proto.Message) {
	switch endpoint {
	case "Greeter.Hello", "Greeter.Fail":
		return &greeter.HelloRequest{}, &greeter.HelloResponse{}
	case "Greeter.Slow":
		return &greeter.SlowRequest{}, &greeter.SlowResponse{}
	case "Greeter.Stream":
		return &greeter.StreamRequest{}, &greeter.StreamResponse{}
	case "Greeter.Sum":
		return &greeter.Num{}, &greeter.Total{}
	case "Greeter.Echo":
		return &greeter.EchoMessage{}, &greeter.EchoMessage{}
	}
	return nil, nil
}

type clientArgs struct {
	service, endpoint, request, contentType, stream, address, metadata string
	timeout                                                            time.Duration
	count                                                              int
	raw, recvReply                                                     bool
	closeDelay                                                         time.Duration
}

func runClient() {
	var a clientArgs
	svc := micro.NewService(
		micro.Name("interop-client"),
		micro.Flags(
			&cli.StringFlag{Name: "service", Value: "greeter-go", Usage: "target service name"},
			&cli.StringFlag{Name: "endpoint", Value: "Greeter.Hello", Usage: "Handler.Method"},
			&cli.StringFlag{Name: "request", Value: "{}", Usage: "request as JSON (proto field names or lowerCamelCase)"},
			&cli.StringFlag{Name: "content_type", Value: "application/json", Usage: "application/json | application/protobuf | ..."},
			&cli.DurationFlag{Name: "timeout", Usage: "per-call request timeout (client.WithRequestTimeout), e.g. 500ms"},
			&cli.StringFlag{Name: "stream", Usage: "server|client|bidi (default: unary, or derived from Greeter.Stream/Sum/Echo)"},
			&cli.IntFlag{Name: "count", Value: 3, Usage: "messages to send for client/bidi streams"},
			&cli.StringFlag{Name: "address", Usage: "call this host:port directly (client.WithAddress), skipping the registry"},
			&cli.StringFlag{Name: "metadata", Usage: "extra request metadata k=v,k2=v2"},
			&cli.BoolFlag{Name: "recv_reply", Usage: "client stream: read one reply before closing (waits for a server that replies without EOS)"},
			&cli.DurationFlag{Name: "close_delay", Value: 200 * time.Millisecond, Usage: "client/bidi stream: pause before Close() (Close sends EOS then drops the connection)"},
			&cli.BoolFlag{Name: "raw", Usage: "send --request bytes verbatim as the body (raw Frame) and print the raw reply"},
		),
		micro.Action(func(c *cli.Context) error {
			a = clientArgs{
				service: c.String("service"), endpoint: c.String("endpoint"), request: c.String("request"),
				contentType: c.String("content_type"), timeout: c.Duration("timeout"), stream: c.String("stream"),
				count: c.Int("count"), address: c.String("address"), metadata: c.String("metadata"), raw: c.Bool("raw"),
				recvReply: c.Bool("recv_reply"), closeDelay: c.Duration("close_delay"),
			}
			return nil
		}),
	)
	svc.Init()
	cl := svc.Client()

	ctx := context.Background()
	if a.metadata != "" {
		md := metadata.Metadata{}
		for _, kv := range strings.Split(a.metadata, ",") {
			p := strings.SplitN(kv, "=", 2)
			if len(p) == 2 {
				md[p[0]] = p[1]
			}
		}
		ctx = metadata.NewContext(ctx, md)
	}
	var copts []client.CallOption
	if a.timeout > 0 {
		copts = append(copts, client.WithRequestTimeout(a.timeout))
	}
	if a.address != "" {
		copts = append(copts, client.WithAddress(a.address))
	}
	if a.stream == "" {
		switch a.endpoint {
		case "Greeter.Stream":
			a.stream = "server"
		case "Greeter.Sum":
			a.stream = "client"
		case "Greeter.Echo":
			a.stream = "bidi"
		}
	}
	reqOpt := client.WithContentType(a.contentType)

	start := time.Now()
	if a.stream == "" {
		var req, rsp interface{}
		preq, prsp := messagesFor(a.endpoint)
		if a.raw || preq == nil {
			req, rsp = &raw.Frame{Data: []byte(a.request)}, &raw.Frame{}
		} else {
			if err := protojson.Unmarshal([]byte(a.request), preq); err != nil {
				emit(map[string]interface{}{"ok": false, "error": errJSON(merrors.BadRequest("interop.client", "bad --request: %v", err))})
				os.Exit(1)
			}
			req, rsp = preq, prsp
		}
		err := cl.Call(ctx, cl.NewRequest(a.service, a.endpoint, req, reqOpt), rsp, copts...)
		out := map[string]interface{}{"ok": err == nil, "elapsed_ms": time.Since(start).Milliseconds()}
		if err != nil {
			out["error"] = errJSON(err)
			out["error_text"] = err.Error()
		} else if f, ok := rsp.(*raw.Frame); ok {
			out["response_raw"] = string(f.Data)
			out["response_b64"] = base64.StdEncoding.EncodeToString(f.Data)
		} else {
			out["response"] = pbJSON(rsp.(proto.Message))
		}
		emit(out)
		if err != nil {
			os.Exit(3)
		}
		return
	}
	err := runStream(ctx, cl, a, reqOpt, copts)
	out := map[string]interface{}{"event": "done", "ok": err == nil, "elapsed_ms": time.Since(start).Milliseconds()}
	if err != nil {
		out["error"] = errJSON(err)
		out["error_text"] = err.Error()
	}
	emit(out)
	if err != nil {
		os.Exit(3)
	}
}

func runStream(ctx context.Context, cl client.Client, a clientArgs, reqOpt client.RequestOption, copts []client.CallOption) error {
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	gs := greeter.NewGreeterService(a.service, &ctOverride{cl, reqOpt})
	switch a.stream {
	case "server":
		req := &greeter.StreamRequest{}
		if err := protojson.Unmarshal([]byte(a.request), req); err != nil {
			return merrors.BadRequest("interop.client", "bad --request: %v", err)
		}
		st, err := gs.Stream(ctx, req, copts...)
		if err != nil {
			return err
		}
		defer st.Close()
		for {
			m, err := st.Recv()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			emit(map[string]interface{}{"event": "recv", "message": pbJSON(m)})
		}
	case "client":
		// go-micro v5's client stream has no half-close: CloseSend() returns
		// "streamer not implemented" and Close() sends the Micro-Error: EOS
		// frame and then closes the TCP connection, so the Total reply can
		// never be read by a Go client. We send --count Nums (1..count),
		// optionally try to read a reply (--recv_reply, for servers that
		// answer without waiting for EOS), then Close().
		st, err := gs.Sum(ctx, copts...)
		if err != nil {
			return err
		}
		for i := 1; i <= a.count; i++ {
			if err := st.Send(&greeter.Num{Value: int64(i)}); err != nil {
				st.Close()
				return err
			}
			emit(map[string]interface{}{"event": "sent", "message": pbJSON(&greeter.Num{Value: int64(i)})})
		}
		if a.recvReply {
			t := &greeter.Total{}
			if err := st.RecvMsg(t); err != nil {
				st.Close()
				return err
			}
			emit(map[string]interface{}{"event": "recv", "message": pbJSON(t)})
		}
		time.Sleep(a.closeDelay)
		err = st.Close()
		emit(map[string]interface{}{"event": "closed", "close_error": fmt.Sprint(err)})
		return nil
	case "bidi":
		st, err := gs.Echo(ctx, copts...)
		if err != nil {
			return err
		}
		defer st.Close()
		for i := 0; i < a.count; i++ {
			if err := st.Send(&greeter.EchoMessage{Text: fmt.Sprintf("echo %d", i), Seq: int64(i)}); err != nil {
				return err
			}
			m, err := st.Recv()
			if err != nil {
				return err
			}
			emit(map[string]interface{}{"event": "recv", "message": pbJSON(m)})
		}
		// no half-close in go-micro v5 (see above): Close() sends EOS and
		// closes the connection.
		time.Sleep(a.closeDelay)
		err = st.Close()
		emit(map[string]interface{}{"event": "closed", "close_error": fmt.Sprint(err)})
		return nil
	}
	return merrors.BadRequest("interop.client", "unknown --stream %q", a.stream)
}

// ctOverride applies the --content_type to every request the generated
// client creates.
type ctOverride struct {
	client.Client
	opt client.RequestOption
}

func (c *ctOverride) NewRequest(service, endpoint string, req interface{}, opts ...client.RequestOption) client.Request {
	return c.Client.NewRequest(service, endpoint, req, append([]client.RequestOption{c.opt}, opts...)...)
}

// ---------------------------------------------------------------- publisher

func runPublisher() {
	var topic, contentType, message string
	var count int
	var interval, linger time.Duration
	svc := micro.NewService(
		micro.Name("interop-publisher"),
		micro.Flags(
			&cli.StringFlag{Name: "topic", Value: "events", Usage: "topic to publish on"},
			&cli.IntFlag{Name: "count", Value: 1, Usage: "number of messages"},
			&cli.StringFlag{Name: "content_type", Value: "application/json", Usage: "application/json | application/protobuf"},
			&cli.StringFlag{Name: "message", Value: "hello", Usage: "Event.message text"},
			&cli.DurationFlag{Name: "interval", Value: 0, Usage: "pause between messages"},
			&cli.DurationFlag{Name: "linger", Value: time.Second, Usage: "wait before exiting (the http broker delivers asynchronously)"},
		),
		micro.Action(func(c *cli.Context) error {
			topic, contentType, message = c.String("topic"), c.String("content_type"), c.String("message")
			count, interval, linger = c.Int("count"), c.Duration("interval"), c.Duration("linger")
			return nil
		}),
	)
	svc.Init()
	cl := svc.Client()
	failed := 0
	for i := 0; i < count; i++ {
		ev := &greeter.Event{Id: fmt.Sprintf("%d", i), Seq: int64(i), Message: message}
		err := cl.Publish(context.Background(), cl.NewMessage(topic, ev, client.WithMessageContentType(contentType)))
		out := map[string]interface{}{"event": "published", "topic": topic, "seq": i, "ok": err == nil}
		if err != nil {
			failed++
			out["error"] = errJSON(err)
			out["error_text"] = err.Error()
		}
		emit(out)
		if interval > 0 {
			time.Sleep(interval)
		}
	}
	// go-micro's http broker Publish returns before the POST is made (it
	// delivers from a goroutine), so give it time before disconnecting.
	time.Sleep(linger)
	_ = svc.Options().Broker.Disconnect()
	emit(map[string]interface{}{"event": "done", "published": count - failed, "failed": failed})
	if failed > 0 {
		os.Exit(3)
	}
}
