# xlb: see README.md. Every target runs from a fresh clone; tests need root.
GO      ?= go
BIN     := bin/xlb
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# grpcnotrace: gRPC (GoBGP's) without golang.org/x/net/trace, whose HTML
# templates call reflect's MethodByName; the linker then keeps every
# exported method of every type, used or not. Without it the binary is
# 38 MB, not 30, and its resident pages (RssFile) 3 MiB more. test/lab's
# BuildTags is the same (TestBuildTags).
BUILD_TAGS := grpcnotrace
# Test time limit for the whole suite; CI allows 90 minutes including installs.
TEST_TIMEOUT ?= 40m
# The lab and end-to-end tests run this binary (built by `make build`).
export XLB_BIN := $(CURDIR)/$(BIN)
# Fuzz targets run by `make test` (package:target:executions), each for
# about 5 s here. A count, not a duration: with -fuzztime 5s Go's fuzzing
# coordinator can fail a target with a bare "context deadline exceeded" when
# its deadline races a busy worker (it did in CI, having found nothing). A
# count has no deadline to race; `go test -timeout` still ends a hang.
# FUZZ_TIME=2m (or 1000000x) runs every target for that long instead.
FUZZ_TARGETS ?= ./vrrp:FuzzDecode:100000x ./config:FuzzParse:50000x ./config:FuzzFastParse:40000x ./config/keepalived:FuzzImport:30000x ./control/sync:FuzzDecode:100000x
FUZZ_TIME    ?=

.PHONY: all generate build test test-unit test-fuzz test-vm bench bench-scale demo vet clean clean-netns

all: build

# Regenerate the BPF objects and their Go bindings (committed; CI checks
# that this leaves no diff).
generate:
	$(GO) generate ./...

build:
	@mkdir -p bin
	CGO_ENABLED=0 $(GO) build -trimpath -tags "$(BUILD_TAGS)" -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/xlb

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

test: build vet test-unit test-fuzz test-vm

# Everything but the VM tests, which test-vm runs (once).
test-unit:
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/test/vm$$')

test-fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; name=$${rest%%:*}; budget=$${rest##*:}; \
		[ -n "$(FUZZ_TIME)" ] && budget="$(FUZZ_TIME)"; \
		echo "fuzz $$pkg $$name for $$budget"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $$budget $$pkg || exit 1; \
	done

# Boots a Debian kernel under qemu and runs the vmtest-tagged tests inside
# (IPVS, IPIP: see test/vm/doc.go); -v prints the boot and test times.
test-vm:
	$(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) ./test/vm

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...

# xlb at the dataplane's limits (test/scale): 1,000 services x 64 real
# servers, with and without TCP checks, and 1,024 x 256; every figure of
# issue 13 next to its target (XLB_SCALE_RUNS samples each, default 5).
bench-scale: build
	$(GO) test -run '^$$' -bench BenchmarkScale -benchtime 1x -timeout 60m ./test/scale

# The namespace lab, narrated (root; installs what is missing first).
demo:
	@.ci/deps
	@$(MAKE) --no-print-directory build
	@$(GO) test -c -o bin/xlb-demo ./test/demo
	@bin/xlb-demo -test.run '^TestDemo$$' -test.timeout 5m

clean:
	rm -rf bin

# Remove namespaces left by a killed test run (tests remove their own).
clean-netns:
	@for ns in $$(ip netns list | awk '/^xlbt/ {print $$1}'); do ip netns del $$ns; done
