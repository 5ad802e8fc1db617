#!/usr/bin/env bash
# Installs cargo-deny from crates.io (pinned by its own lock file) when it is not installed.
set -euo pipefail
if ! cargo deny --version >/dev/null 2>&1; then
  echo "cargo-deny not found; installing it with cargo install --locked" >&2
  cargo install --locked cargo-deny
fi
cargo deny --version
