#!/usr/bin/env bash
# Saga benchmark: nats-server (free port, temp store) and the five release binaries on free
# ports, seeded through the admin API, then `POST /orders?wait=10s` with the saga-5 mix in a
# closed loop and at a fixed rate, the invariants (every order terminal, `audit` clean) and the
# bare JetStream skeleton for the ratio. All traffic stays on 127.0.0.1.
#
#   scripts/bench.sh                      # defaults: 64 connections, 20 s closed, 15 s fixed, 10 s skeleton
#   scripts/bench.sh --closed 10s --fixed 0s --skeleton 5s
#   scripts/bench.sh --rate 300           # fixed rate instead of half the closed-loop rate
#   scripts/bench.sh --history 1000000   # what history costs: RSS, disk/order, restart, verify/replay,
#                                         # GET /orders latency at checkpoints (report in target/history-bench)
#   scripts/bench.sh --help
#
# Profile a service while it runs: `perf record -g -p <pid>` (pids: `pgrep -P <loadtest pid>`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-nats.sh >/dev/null
cargo build --release --bins --quiet
exec target/release/loadtest "$@"
