module github.com/nhiwatch/nhiwatch/tests

go 1.26.0

require (
	github.com/nhiwatch/nhiwatch/pkg/events v0.0.0
	github.com/nhiwatch/nhiwatch/services/ingest v0.0.0
	github.com/nhiwatch/nhiwatch/services/normalize v0.0.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/nats-io/nats.go v1.55.0 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/valyala/fastjson v1.6.10 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/nhiwatch/nhiwatch/pkg/events => ../pkg/events
	github.com/nhiwatch/nhiwatch/pkg/platform => ../pkg/platform
	github.com/nhiwatch/nhiwatch/schemas => ../schemas
	github.com/nhiwatch/nhiwatch/services/ingest => ../services/ingest
	github.com/nhiwatch/nhiwatch/services/normalize => ../services/normalize
)
