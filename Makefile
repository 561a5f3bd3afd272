# nhiwatch — every target works across all modules of the Go workspace (go.work).
# `make test` and `make run` start a private ClickHouse (scripts/clickhouse.sh) and install
# Debian's clickhouse-server first when it is missing.

.DEFAULT_GOAL := help
SHELL := /bin/bash

MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
GO_TEST_FLAGS ?= -race -count=1 -timeout 20m
# The fault suite: verbose, so CI logs show its figures (seeds, RSS, backlog, drain times).
# FAULTS_RACE=1 builds the services under test with the race detector (slower).
FAULTS_FLAGS ?= -v -count=1 -timeout 30m
FUZZTIME ?= 10s

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Run the all-in-one over examples/ (with a local ClickHouse when possible) and report.
	@scripts/run.sh

.PHONY: test
test: ## Start a private ClickHouse, run every module's tests with -race, stop it.
	@GO_TEST_FLAGS="$(GO_TEST_FLAGS)" scripts/test.sh

.PHONY: test-faults
test-faults: ## Run the fault suite (tests/faults: real binaries as processes, kill -9, outages, poison, planted secrets) with a private ClickHouse.
	@started=0; scripts/clickhouse.sh status || started=1; \
	if ! addr=$$(scripts/clickhouse.sh start); then echo "test-faults: could not start ClickHouse" >&2; exit 1; fi; \
	export "$$addr"; \
	(cd tests && go vet -tags faults ./... && go test -tags faults $(FAULTS_FLAGS) ./faults/...); status=$$?; \
	if [ "$$started" = 1 ]; then scripts/clickhouse.sh stop; fi; \
	exit $$status

.PHONY: fuzz
fuzz: ## Run every Go fuzz target of every module for FUZZTIME each (default 10s).
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

.PHONY: test-short
test-short: ## Run every module's tests without a ClickHouse (those tests skip unless CI=true).
	@for m in $(MODULES); do (cd $$m && go test -count=1 ./...) || exit 1; done

.PHONY: bench
bench: ## Run the Go benchmarks of every module.
	@for m in $(MODULES); do (cd $$m && go test -run '^$$' -bench . -benchmem ./...) || exit 1; done

.PHONY: lint
lint: ## go vet and gofmt over every module.
	@for m in $(MODULES); do (cd $$m && go vet ./...) || exit 1; done
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: generate
generate: ## Regenerate pkg/events from schemas/*.proto.
	go run ./schemas/internal/protogen -proto schemas -out pkg/events

.PHONY: generate-check
generate-check: ## Fail when the generated code in pkg/events is stale.
	go run ./schemas/internal/protogen -proto schemas -out pkg/events -check

.PHONY: build
build: ## Build every binary into bin/.
	@mkdir -p bin
	go build -o bin/nhiwatch ./cmd/nhiwatch
	for s in ingest normalize detect notify; do go build -o bin/$$s ./services/$$s/cmd/$$s || exit 1; done

.PHONY: clean
clean: ## Stop the private ClickHouse and remove local state (data/, .clickhouse/, bin/).
	-scripts/clickhouse.sh stop
	rm -rf data .clickhouse bin
