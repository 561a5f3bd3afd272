// Command detect runs the nhiwatch detect service on its own, against an external NATS
// JetStream server and ClickHouse.
//
//	detect -config nhiwatch.yaml
//
// It reads the same configuration file as `nhiwatch run` (the sections nats, streams,
// clickhouse, telemetry and detect; the other services' sections are ignored), with
// NHIWATCH_* environment variables on top, e.g. NHIWATCH_NATS_URL=nats://nats:4222,
// NHIWATCH_CLICKHOUSE_ADDR=clickhouse:9000, NHIWATCH_DETECT_CATALOG=/etc/nhiwatch/catalog.yaml.
// Several detect processes share the identity partitions through leases.
package main

import (
	"context"

	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/services/detect"
)

func main() {
	base.Main("detect", detect.DefaultConfig(), func(ctx context.Context, p *base.Process, cfg detect.Config) (base.Service, error) {
		ch, err := p.ClickHouse(ctx)
		if err != nil {
			return nil, err
		}
		return detect.New(cfg, detect.Deps{
			Logger: p.Logger, Meter: p.Metrics.Meter("nhiwatch/detect"), JS: p.JS, Streams: p.Common().Streams,
			ClickHouse: ch,
		})
	})
}
