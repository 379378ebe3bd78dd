# Codelab infra. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CODELAB_CACHE ?= $(HOME)/.cache/codelab
export CODELAB_CACHE
export PATH := $(CODELAB_CACHE)/bin:$(PATH)

MODULES  := agent roles imager e2e tools internal
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -s -w -X github.com/codelab-app/infra/agent/internal/version.Version=$(VERSION) -X github.com/codelab-app/infra/agent/internal/version.Commit=$(COMMIT)
FUZZTIME ?= 15s

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install and start everything the build and tests need (Debian 12, root; idempotent)
	@bash scripts/deps.sh

.PHONY: build
build: bin/codelab-agent bin/imager ## build the static codelab-agent and imager into bin/

.PHONY: bin/codelab-agent
bin/codelab-agent:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $@ ./agent/cmd/codelab-agent

.PHONY: bin/imager
bin/imager:
	CGO_ENABLED=0 go build -trimpath -ldflags '-s -w -X github.com/codelab-app/infra/imager/internal/version.Version=$(VERSION) -X github.com/codelab-app/infra/imager/internal/version.Commit=$(COMMIT)' -o $@ ./imager/cmd/imager

.PHONY: test
test: deps ## run every test: unit, integration (real Consul, consul-template, dockerd, packer) and a bounded fuzz run
	@bash scripts/test.sh

.PHONY: fuzz
fuzz: ## fuzz the user_data parser for FUZZTIME (default 15s)
	cd agent && go test ./internal/userdata -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)

.PHONY: bench
bench: ## run the benchmarks and print their ratios
	@for m in $(MODULES); do (cd $$m && CODELAB_INTEGRATION=1 go test -run '^$$' -bench . -benchtime 1x ./...) || exit 1; done

.PHONY: bench-boot
bench-boot: deps build bin/localdo bin/demo ## boot-to-ready four ways on the local DigitalOcean (old way, pulling, baked, reboot) and their ratios
	cd e2e && CODELAB_E2E=1 CODELAB_E2E_BIN=$(CURDIR)/bin go test -count=1 -run '^$$' -bench BenchmarkBoot -benchtime 1x -timeout 45m ./suite/

.PHONY: bin/localdo bin/demo
bin/localdo bin/demo:
	CGO_ENABLED=0 go build -trimpath -o $@ ./e2e/cmd/$(@F)

.PHONY: demo
demo: deps build bin/localdo bin/demo ## bake both images on the local DigitalOcean and boot a cluster from them
	@bash scripts/demo.sh

.PHONY: demo-down
demo-down: bin/localdo bin/demo ## remove every container, network, volume and image the demo made
	bin/demo down

.PHONY: e2e
e2e: deps build bin/localdo bin/demo ## end-to-end suite on the local DigitalOcean (about 25 minutes), from a clean start
	@# A cluster an earlier run left up may run other code: the suite starts from nothing.
	bin/demo down
	cd e2e && CODELAB_E2E=1 CODELAB_E2E_BIN=$(CURDIR)/bin go test -count=1 -timeout 55m -v ./suite/

.PHONY: fmt
fmt: ## format Go code
	gofmt -w $(MODULES)

.PHONY: lint
lint: ## gofmt check and go vet for every module
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do (cd $$m && go vet ./...) || exit 1; done
