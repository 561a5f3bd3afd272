#!/usr/bin/env bash
# `make run`: starts a private ClickHouse when it can (else runs without one and says so),
# runs the all-in-one over the sample logs in examples/ until the pipeline is idle, and
# prints what happened.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if addr_line=$(scripts/clickhouse.sh start); then
  export "${addr_line?}"
  echo "run.sh: ClickHouse at $NHIWATCH_CLICKHOUSE_ADDR (stop it with scripts/clickhouse.sh stop)" >&2
else
  echo "run.sh: no ClickHouse could be started: running without storage" >&2
  unset NHIWATCH_CLICKHOUSE_ADDR
fi
exec go run ./cmd/nhiwatch run -config examples/nhiwatch.yaml -exit-when-idle
