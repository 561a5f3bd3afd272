// Package events is the contract between the nhiwatch services: the Event, Finding and batch
// types generated from schemas/events.proto, deterministic ids, the partition function,
// subject and header names, and the codecs that put them on NATS JetStream.
//
// Services meet only through this package: ingest publishes RawBatch messages to NHI_RAW,
// normalize turns them into EventBatch messages on NHI_EVENTS, detect publishes Finding
// messages to NHI_FINDINGS, and notify consumes those. Subpackage streams sets up the
// streams, consumers and KV buckets; natsembed runs an in-process JetStream server;
// eventstest starts one for tests.
package events

//go:generate go run ../../schemas/internal/protogen -proto ../../schemas -out .
