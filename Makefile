# wasmbridge — the two commands a newcomer needs are `make run` and `make test`.
# Every target does its own set-up on a fresh Debian machine with rustup.

CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FILTERS_OUT := filters/target/wasm32-wasip1/release

.PHONY: run test setup filters build release clean

## Installs what the build needs: cmake (Pingora's zlib-ng), the wasm32-wasip1 target,
## rustfmt and clippy.
setup:
	@command -v cmake >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq cmake; }
	@command -v cc >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq build-essential; }
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy

## The example and probe filters (filters/ is its own workspace, built for wasm32-wasip1).
filters: setup
	cd filters && CARGO_TARGET_DIR=target $(CARGO) build --release

build: setup
	$(CARGO) build --workspace

release: setup
	$(CARGO) build --release -p wasmbridge-pingora

## Builds the filters and the release gateway, then serves conf/gateway.yaml:
##   curl -i localhost:8080/
run: filters release
	exec "$${CARGO_TARGET_DIR:-target}/release/wasmbridge" run -c conf/gateway.yaml

## Format check, lints, and every test (unit, integration, end-to-end).
test: filters
	$(CARGO) fmt --all --check
	cd filters && $(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd filters && CARGO_TARGET_DIR=target $(CARGO) clippy --release -- -D warnings
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

clean:
	$(CARGO) clean
	rm -rf filters/target
