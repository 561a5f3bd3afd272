# nhiwatch — every target works across all modules of the Go workspace (go.work).
# `make test` and `make run` start a private ClickHouse (scripts/clickhouse.sh) and install
# Debian's clickhouse-server first when it is missing.

.DEFAULT_GOAL := help
SHELL := /bin/bash

MODULES := $(shell go list -m -f '{{.Dir}}' 2>/dev/null)
GO_TEST_FLAGS ?= -race -count=1 -timeout 20m

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Run the all-in-one over examples/ (with a local ClickHouse when possible) and report.
	@scripts/run.sh

.PHONY: test
test: ## Start a private ClickHouse, run every module's tests with -race, stop it.
	@GO_TEST_FLAGS="$(GO_TEST_FLAGS)" scripts/test.sh

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
