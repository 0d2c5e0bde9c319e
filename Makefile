# dcounter build and test entry points. `make test` is what CI runs.
GO      ?= go
BIN     ?= bin/dcounter
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build image image-multiarch test lint unit bench fuzz fuzz-resp clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/dcounter

# Container images. IMAGE names them (your registry's path, for
# image-multiarch); ARCH is the CPU architecture `make image` builds for,
# this machine's Go architecture unless set (ARCH=arm64 make image).
IMAGE     ?= dcounter
ARCH      ?= $(shell $(GO) env GOARCH)
PLATFORMS ?= linux/amd64,linux/arm64
# BUILDX_FLAGS says where image-multiarch's images go: pushed to IMAGE's
# registry by default (Docker's image store cannot hold a multi-platform
# image); --output type=oci,dest=FILE writes an archive instead.
BUILDX_FLAGS ?= --push

# image: the container image $(IMAGE):latest for linux/$(ARCH), FROM
# scratch (no registry needed). For the Docker engine's own architecture
# any builder will do; for another one (ARCH=arm64 on an amd64 machine) it
# takes Buildx, as the classic builder cannot put a foreign-architecture
# file on an empty base.
image: bin/dcounter-linux-$(ARCH)
	@if [ "$(ARCH)" = "$$(docker version --format '{{.Server.Arch}}')" ]; then \
	  set -x; docker build --build-arg TARGETARCH=$(ARCH) -t $(IMAGE):latest -t $(IMAGE):$(VERSION) .; \
	elif docker buildx version >/dev/null 2>&1; then \
	  set -x; docker buildx build --platform linux/$(ARCH) --load -t $(IMAGE):latest -t $(IMAGE):$(VERSION) .; \
	else \
	  echo "ARCH=$(ARCH) differs from the Docker engine's architecture: building for it needs Docker Buildx (docker buildx version)"; exit 1; \
	fi

# image-multiarch: one image for every platform in PLATFORMS (with Docker
# Buildx), each with the binary built for it here; see BUILDX_FLAGS.
image-multiarch:
	@command -v docker >/dev/null && docker buildx version >/dev/null 2>&1 || \
	  { echo "image-multiarch needs Docker Buildx (docker buildx version); 'make image' builds for one architecture without it"; exit 1; }
	for p in $$(echo $(PLATFORMS) | tr , ' '); do \
	  $(MAKE) --no-print-directory bin/dcounter-linux-$${p#linux/} || exit 1; \
	done
	docker buildx build --platform $(PLATFORMS) -t $(IMAGE):latest -t $(IMAGE):$(VERSION) $(BUILDX_FLAGS) .

# The static binary the images hold; always rebuilt (go build is
# incremental), so an image never holds a stale one.
bin/dcounter-linux-%: FORCE
	CGO_ENABLED=0 GOOS=linux GOARCH=$* $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $@ ./cmd/dcounter

.PHONY: FORCE
FORCE:

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
