# dcounter build and test entry points. `make test` is what CI runs.
GO      ?= go
BIN     ?= bin/dcounter
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build image test lint unit bench fuzz fuzz-resp clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/dcounter

# image: the container image dcounter:latest, FROM scratch (no registry needed).
image:
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/dcounter-linux-amd64 ./cmd/dcounter
	docker build -t dcounter:latest -t dcounter:$(VERSION) .

# test: formatting, vet, and every test (unit, simulation, real-process end
# to end) under the race detector. The end-to-end tests run after the others,
# not beside them, so that their real processes are not starved of CPU.
test: lint
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e$$)
	$(GO) test -race -count=1 ./e2e/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# bench: Go micro-benchmarks and simulations (see BENCHMARKS.md for the
# HTTP and cluster benchmarks, which need wrk).
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./internal/...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecode -fuzztime=60s ./internal/wire/

# fuzz-resp: the Redis protocol reader, on arbitrary and split input, and the
# codec's round trip (go test runs one fuzz target at a time).
fuzz-resp:
	$(GO) test -run='^$$' -fuzz='^FuzzReader$$' -fuzztime=60s ./internal/resp/
	$(GO) test -run='^$$' -fuzz='^FuzzRoundTrip$$' -fuzztime=30s ./internal/resp/

clean:
	rm -rf bin
