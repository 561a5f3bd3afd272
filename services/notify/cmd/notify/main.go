// Command notify runs the nhiwatch notify service on its own, against an external NATS
// JetStream server (and ClickHouse, for triage, when configured).
//
//	notify -config nhiwatch.yaml
//
// It reads the same configuration file as `nhiwatch run` (the sections nats, streams,
// clickhouse, telemetry and notify; the other services' sections are ignored), with
// NHIWATCH_* environment variables on top, e.g. NHIWATCH_NATS_URL=nats://nats:4222.
package main

import (
	"context"
	"os"

	"github.com/nhiwatch/nhiwatch/pkg/platform/base"
	"github.com/nhiwatch/nhiwatch/services/notify"
)

func main() {
	base.Main("notify", notify.DefaultConfig(), func(ctx context.Context, p *base.Process, cfg notify.Config) (base.Service, error) {
		// With ClickHouse, triage changes go to finding_status and finding_status_log and the
		// API lists findings from the findings table.
		ch, err := p.ClickHouse(ctx)
		if err != nil {
			return nil, err
		}
		return notify.New(cfg, notify.Deps{
			Logger: p.Logger, Meter: p.Metrics.Meter("nhiwatch/notify"), JS: p.JS, Streams: p.Common().Streams,
			Out: os.Stdout, ClickHouse: ch,
		})
	})
}
