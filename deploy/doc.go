// Package deploy holds the deployment of nhiwatch (compose files, Dockerfile, NATS,
// ClickHouse, Prometheus, OpenTelemetry collector and Grafana configuration, dashboards) and
// the tests that keep it true to the code: the compose files load with compose-go and wire
// the services to each other, every dashboard query runs on ClickHouse, and every metric a
// dashboard charts is one the services export.
package deploy
