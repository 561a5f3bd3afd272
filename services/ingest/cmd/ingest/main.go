// Command ingest runs the nhiwatch ingest service on its own, against an external NATS
// JetStream server.
//
//	ingest -config nhiwatch.yaml
//
// It reads the same configuration file as `nhiwatch run` (the sections nats, streams,
// telemetry and ingest; the other services' sections are ignored), with NHIWATCH_*
// environment variables on top, e.g. NHIWATCH_NATS_URL=nats://nats:4222 or
// NHIWATCH_INGEST_WORKERS=8.
package main

import (
	"context"

	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/services/ingest"
)

func main() {
	base.Main("ingest", ingest.DefaultConfig(), func(_ context.Context, p *base.Process, cfg ingest.Config) (base.Service, error) {
		return ingest.New(cfg, ingest.Deps{
			Logger: p.Logger, Meter: p.Metrics.Meter("nhiwatch/ingest"), JS: p.JS, Streams: p.Common().Streams,
		})
	})
}
