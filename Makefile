GO ?= go
BIN := bin/vigil
PKGS := ./...
LABLOG ?= $${TMPDIR:-/tmp}/vigil-lab-test.log

PREFIX ?= /usr/local
UNITDIR ?= /etc/systemd/system
DESTDIR ?=

.PHONY: help build demo test lint bench fuzz lab-test lab-bench chaos clean install

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/vigil and bin/vigil-lab
	$(GO) build -o $(BIN) ./cmd/vigil
	$(GO) build -o bin/vigil-lab ./cmd/vigil-lab

install: build ## install vigil, its systemd unit, man pages, shell completions and sample alerts (PREFIX=/usr/local UNITDIR=/etc/systemd/system DESTDIR=)
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/vigil
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's#/usr/local/bin/vigil#$(PREFIX)/bin/vigil#' contrib/systemd/vigil.service > $(DESTDIR)$(UNITDIR)/vigil.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/vigil.service
	./$(BIN) gen man $(DESTDIR)$(PREFIX)/share/man/man1
	./$(BIN) gen completions $(DESTDIR)$(PREFIX)/share/vigil/completions
	install -D -m 0644 $(DESTDIR)$(PREFIX)/share/vigil/completions/vigil.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/vigil
	install -D -m 0644 $(DESTDIR)$(PREFIX)/share/vigil/completions/_vigil $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_vigil
	install -D -m 0644 $(DESTDIR)$(PREFIX)/share/vigil/completions/vigil.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/vigil.fish
	install -D -m 0755 -t $(DESTDIR)$(PREFIX)/lib/vigil/alerts contrib/alerts/alert-file.sh contrib/alerts/alert-mail.sh
	@echo "installed in $(DESTDIR)$(PREFIX); next: vigil cluster create ... --data-dir /var/lib/vigil, then systemctl daemon-reload && systemctl enable --now vigil"

demo: build ## run a live local 3-member cluster that shows failover (Ctrl-C stops it)
	./$(BIN) demo

test: ## run every test with the race detector (multi-process tests included)
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -race -count=1 -timeout 25m $$($(GO) list $(PKGS) | grep -v /test/lab)
	@echo "go test -race -count=1 -timeout 25m -v ./test/lab  (log: $(LABLOG))"
	@$(GO) test -race -count=1 -timeout 25m -v ./test/lab > $(LABLOG) 2>&1; rc=$$?; \
	  grep -E '^(--- |ok |FAIL)|chaos seed [0-9]+ \(|violations:|VIOLATION|faults injected|CDB writes|availability|median|ratio|answers|DLM:|grants |store ops|lock wait' $(LABLOG); \
	  if [ $$rc -ne 0 ]; then tail -300 $(LABLOG); exit $$rc; fi

lint: ## gofmt, go vet, staticcheck (when installed)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet $(PKGS)
	@command -v staticcheck >/dev/null && staticcheck $(PKGS) || echo "staticcheck not installed; skipped"

bench: build ## CDB writes, failover, relocation, director speed; the lock manager: pairs/s (in process, socket), lock latency, 1M held locks
	$(GO) test -run '^$$' -bench BenchmarkCDBWrite -benchtime 2000x -timeout 20m ./test/e2e
	$(GO) test -run '^$$' -bench BenchmarkFailover -benchtime 10x -timeout 20m ./test/e2e
	$(GO) test -run '^$$' -bench BenchmarkServiceFailover -benchtime 10x -timeout 20m ./test/e2e
	$(GO) test -run '^$$' -bench BenchmarkRelocate -benchtime 20x -timeout 20m ./test/e2e
	$(GO) test -run '^$$' -bench BenchmarkDecide -timeout 20m ./internal/director
	$(GO) test -run '^$$' -bench BenchmarkLocalPairs -benchtime 2s ./internal/dlm/server
	$(GO) test -run '^$$' -bench BenchmarkMillionLocks -benchtime 1x -timeout 20m ./internal/dlm/server
	$(GO) test -run '^$$' -bench . -benchtime 2s ./dlmclient
	$(GO) test -run '^$$' -bench BenchmarkDLMRemoteLock -benchtime 20000x ./internal/rpc
	$(GO) test -run '^$$' -bench BenchmarkDLMLockLatency -benchtime 3000x -timeout 20m ./test/e2e
	$(GO) run ./bench/dlmbench --vigil $(BIN) --members 1 --workers 4 --hold 1000000

bench-etcd: build ## the lock manager against etcd's concurrency.Mutex, side by side (needs apt-get install etcd-server etcd-client)
	./bench/dlm-vs-etcd.sh $${WORKERS:-4} $${DURATION:-10s}

fuzz: ## run every fuzz target for FUZZTIME each (default 60s)
	./scripts/fuzz.sh $${FUZZTIME:-60s}

lab-test: ## the namespace lab tests (root): faults on 3 and 5 members, chaos, a short failover benchmark
	VIGIL_REQUIRE_LAB=1 $(GO) test -race -count=1 -v -timeout 25m ./test/lab

lab-bench: build ## failover benchmark in the lab, lan and fast, against keepalived; lock latency on the lab network (root)
	./bin/vigil-lab --dir /tmp/vigil-lab-bench bench failover --trials $${TRIALS:-20} --profile lan --vs keepalived
	./bin/vigil-lab --dir /tmp/vigil-lab-bench bench failover --trials $${TRIALS:-20} --profile fast
	./bench/dlm-lab-latency.sh

chaos: build ## 30 minutes of chaos on 3 then 5 members, random seeds (printed) (root)
	./bin/vigil-lab --dir /tmp/vigil-lab-chaos chaos --members 3 --duration $${CHAOS:-15m}
	./bin/vigil-lab --dir /tmp/vigil-lab-chaos chaos --members 5 --duration $${CHAOS:-15m}

clean: ## remove build output
	rm -rf bin
