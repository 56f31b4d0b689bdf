GO ?= go
BIN := bin/vigil
PKGS := ./...

.PHONY: help build demo test lint bench fuzz lab-test clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/vigil
	$(GO) build -o $(BIN) ./cmd/vigil

demo: build ## run a live local 3-member cluster that shows failover (Ctrl-C stops it)
	./$(BIN) demo

test: ## run every test with the race detector (multi-process tests included)
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

lint: ## gofmt, go vet, staticcheck (when installed)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	@command -v staticcheck >/dev/null && staticcheck $(PKGS) || echo "staticcheck not installed; skipped"

bench: ## CDB writes, detection/election, service failover and relocation on local 3-member clusters; director speed
	$(GO) test -run '^$$' -bench BenchmarkCDBWrite -benchtime 2000x -timeout 20m ./test/e2e
	$(GO) test -run '^$$' -bench BenchmarkFailover -benchtime 10x -timeout 20m ./test/e2e
	$(GO) test -run '^$$' -bench BenchmarkServiceFailover -benchtime 10x -timeout 20m ./test/e2e
	$(GO) test -run '^$$' -bench BenchmarkRelocate -benchtime 20x -timeout 20m ./test/e2e
	$(GO) test -run '^$$' -bench BenchmarkDecide -timeout 20m ./internal/director

fuzz: ## run every fuzz target for FUZZTIME each (default 60s)
	./scripts/fuzz.sh $${FUZZTIME:-60s}

lab-test: ## the namespace lab tests (root)
	VIGIL_REQUIRE_LAB=1 $(GO) test -race -count=1 -run Lab ./...

clean: ## remove build output
	rm -rf bin
