package main

// Modes events-publish and events-consume: go-micro's events/natsjs (JetStream)
// as a peer for trimicro's trimicro/events/natsjs.py. Plain Go flags (these
// modes need no Go Micro service):
//
//	interop events-publish --address A --topic T [--count N] [--message M]
//	interop events-consume --address A --topic T --group G [--count N] [--auto_ack] [--ack_wait D]

import (
	"flag"
	"fmt"
	"os"
	"time"

	"go-micro.dev/v5/events"
	"go-micro.dev/v5/events/natsjs"
)

func eventsFlags(mode string) (*flag.FlagSet, *string, *string) {
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	address := fs.String("address", "127.0.0.1:4222", "NATS server(s), comma separated")
	topic := fs.String("topic", "events", "topic (one JetStream stream per topic)")
	return fs, address, topic
}

func openStream(address string) events.Stream {
	s, err := natsjs.NewStream(natsjs.Address(address), natsjs.SynchronousPublish(true))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return s
}

func runEventsPublish() {
	fs, address, topic := eventsFlags("events-publish")
	count := fs.Int("count", 1, "events to publish")
	message := fs.String("message", "hello", "payload field \"message\"")
	fs.Parse(os.Args[1:])
	s := openStream(*address)
	for i := 0; i < *count; i++ {
		payload := map[string]interface{}{"message": *message, "n": i}
		md := map[string]string{"From": "go"}
		if err := s.Publish(*topic, payload, events.WithMetadata(md)); err != nil {
			emit(map[string]interface{}{"event": "publish_error", "error": err.Error()})
			os.Exit(3)
		}
		emit(map[string]interface{}{"event": "published", "n": i})
	}
}

func runEventsConsume() {
	fs, address, topic := eventsFlags("events-consume")
	group := fs.String("group", "", "consumer group (durable consumer name)")
	count := fs.Int("count", 1, "events to receive before exiting")
	autoAck := fs.Bool("auto_ack", true, "events.WithAutoAck(true, ack_wait)")
	ackWait := fs.Duration("ack_wait", 30*time.Second, "JetStream ack wait")
	fs.Parse(os.Args[1:])
	s := openStream(*address)
	opts := []events.ConsumeOption{events.WithGroup(*group)}
	if *autoAck {
		opts = append(opts, events.WithAutoAck(true, *ackWait))
	}
	ch, err := s.Consume(*topic, opts...)
	if err != nil {
		emit(map[string]interface{}{"event": "consume_error", "error": err.Error()})
		os.Exit(3)
	}
	emit(map[string]interface{}{"event": "ready"})
	for i := 0; i < *count; i++ {
		ev := <-ch
		var body map[string]interface{}
		uerr := ev.Unmarshal(&body)
		out := map[string]interface{}{
			"event": "consumed", "id": ev.ID, "topic": ev.Topic, "metadata": ev.Metadata,
			"payload": body, "timestamp": ev.Timestamp.Format(time.RFC3339Nano),
		}
		if uerr != nil {
			out["payload_raw"] = string(ev.Payload)
		}
		emit(out)
		ev.Ack()
	}
}
