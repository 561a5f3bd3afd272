#!/usr/bin/env bash
# Runs every module's tests with a private ClickHouse: starts it (installing Debian's
# clickhouse-server when missing), runs `go test` in each module of the workspace, and stops
# the server again if this script started it.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

started=0
if ! scripts/clickhouse.sh status; then
  started=1
fi
if ! addr_line=$(scripts/clickhouse.sh start); then
  echo "test.sh: could not start ClickHouse; tests that need it fail in CI" >&2
  [ "${CI:-}" = "true" ] && exit 1
else
  export "${addr_line?}"
  echo "test.sh: ClickHouse at $NHIWATCH_CLICKHOUSE_ADDR" >&2
fi
cleanup() { [ "$started" = 1 ] && scripts/clickhouse.sh stop; }
trap cleanup EXIT

status=0
for m in $(go list -m -f '{{.Dir}}'); do
  echo "== $(realpath --relative-to="$root" "$m")"
  # shellcheck disable=SC2086
  (cd "$m" && go test ${GO_TEST_FLAGS:--race -count=1 -timeout 20m} ./...) || status=1
done
exit $status
