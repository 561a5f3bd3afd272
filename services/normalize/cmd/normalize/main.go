// Command normalize runs the nhiwatch normalize service on its own, against an external NATS
// JetStream server.
//
//	normalize -config nhiwatch.yaml
//
// It reads the same configuration file as `nhiwatch run` (the sections nats, streams,
// telemetry and normalize; the other services' sections are ignored), with NHIWATCH_*
// environment variables on top, e.g. NHIWATCH_NATS_URL=nats://nats:4222 or
// NHIWATCH_NORMALIZE_WORKERS=8.
package main

import (
	"context"

	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/services/normalize"
)

func main() {
	base.Main("normalize", normalize.DefaultConfig(), func(_ context.Context, p *base.Process, cfg normalize.Config) (base.Service, error) {
		return normalize.New(cfg, normalize.Deps{
			Logger: p.Logger, Meter: p.Metrics.Meter("nhiwatch/normalize"), JS: p.JS, Streams: p.Common().Streams,
		})
	})
}
