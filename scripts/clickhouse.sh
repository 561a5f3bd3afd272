#!/usr/bin/env bash
# Starts and stops a private ClickHouse server for tests and local runs: its own ports, its
# own data directory, nothing shared with a system-wide ClickHouse.
#
#   scripts/clickhouse.sh start   installs Debian's clickhouse-server when it is missing,
#                                 starts it, waits until it answers and prints
#                                 NHIWATCH_CLICKHOUSE_ADDR=127.0.0.1:<port>
#   scripts/clickhouse.sh stop    stops the instance started by "start"
#   scripts/clickhouse.sh status  exits 0 when the instance answers
#
# Environment: CH_DIR (state directory, default .clickhouse under the repository),
# CH_TCP_PORT (default 19000), CH_HTTP_PORT (default 18123).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${CH_DIR:-$root/.clickhouse}
tcp_port=${CH_TCP_PORT:-19000}
http_port=${CH_HTTP_PORT:-18123}
pidfile=$dir/clickhouse.pid

log() { echo "clickhouse.sh: $*" >&2; }

server_bin() {
  if command -v clickhouse-server >/dev/null 2>&1; then
    command -v clickhouse-server
  elif [ -x /usr/sbin/clickhouse-server ]; then
    echo /usr/sbin/clickhouse-server
  elif command -v clickhouse >/dev/null 2>&1; then
    echo "$(command -v clickhouse) server"
  fi
}

install_server() {
  [ -n "$(server_bin)" ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    log "clickhouse-server is missing and apt-get is not available; install ClickHouse yourself"
    return 1
  fi
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  log "installing Debian's clickhouse-server"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    clickhouse-server clickhouse-client >&2
}

answers() {
  curl -fsS --max-time 2 "http://127.0.0.1:$http_port/ping" >/dev/null 2>&1
}

write_config() {
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
  cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$dir/log/server.log</log>
    <errorlog>$dir/log/server.err.log</errorlog>
    <size>100M</size>
    <count>2</count>
  </logger>
  <http_port>$http_port</http_port>
  <tcp_port>$tcp_port</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <max_connections>512</max_connections>
  <max_concurrent_queries>200</max_concurrent_queries>
  <mark_cache_size>268435456</mark_cache_size>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
</yandex>
XML
  cat >"$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
XML
}

start() {
  if answers; then
    echo "NHIWATCH_CLICKHOUSE_ADDR=127.0.0.1:$tcp_port"
    return 0
  fi
  install_server
  local bin
  bin=$(server_bin)
  [ -n "$bin" ] || { log "no clickhouse-server binary after install"; return 1; }
  write_config
  log "starting $bin on tcp $tcp_port, http $http_port, data in $dir"
  # shellcheck disable=SC2086
  nohup $bin --config-file="$dir/config.xml" >"$dir/log/stdout.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 120); do
    if answers; then
      echo "NHIWATCH_CLICKHOUSE_ADDR=127.0.0.1:$tcp_port"
      return 0
    fi
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "server exited during start; last log lines:"
      tail -n 20 "$dir/log/server.err.log" "$dir/log/stdout.log" >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.5
  done
  log "server did not answer within 60s"
  return 1
}

stop() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 40); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) answers ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
