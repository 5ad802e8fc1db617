#!/usr/bin/env bash
# Runs the whole test suite: domain unit tests, store integration tests and the end-to-end
# suite, all against real sled files, a real nats-server and a headless chromium (installed when
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-nats.sh >/dev/null
# The console and dashboard tests drive the operator console in a real headless browser.
scripts/ensure-chromium.sh >/dev/null
# The chaos suite runs the real service binaries as processes.
cargo build --bins --quiet
cargo test --workspace --all-features "$@"
