#!/usr/bin/env bash
# The chaos suite, sized for people rather than CI.
#
# Usage: scripts/chaos.sh [orders] [minutes]        (defaults: 3000 orders, 10 minutes)
#
# Builds the service binaries and runs tests/tests/chaos.rs: the five services run as real
# processes against a real nats-server while a load places `orders` orders (every kind: successes,
# declined payments, insufficient stock, used/unknown coupons, insufficient points) spread over
# `minutes`, and a chaos task SIGKILLs and restarts a random service every 1-2 s and restarts the
# broker about every 15 s. Each of the two tests runs that long:
#   orders_settle_and_the_audit_passes_under_kills_and_broker_restarts
#   orders_settle_and_the_audit_passes_after_the_broker_loses_its_store  (broker store wiped
#                                                                         about every 2 minutes)
# Then every order must settle (FAILED, or COMPLETED and delivered to the data platform), the
# services must stop cleanly, and the offline audit of the five logs must be clean.
#
# Environment:
#   CHAOS_SEED=<n>    repeat a run's workload and chaos draws (each run prints its seed)
#   CHAOS_TEST=<name> run only the tests whose name contains <name> (e.g. loses_its_store)
# On failure the data dirs and logs (<root>/logs/<service>.log) are kept; the path is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

orders=${1:-3000}
minutes=${2:-10}
if ! [[ "$orders" =~ ^[1-9][0-9]*$ && "$minutes" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [orders] [minutes]   (positive integers)" >&2
  exit 2
fi

scripts/ensure-nats.sh >/dev/null
echo "==> building the services"
cargo build --quiet --bins

export CHAOS_ORDERS=$orders
export CHAOS_SECONDS=$((minutes * 60))
echo "==> chaos: $orders orders over $minutes min per test${CHAOS_SEED:+, seed $CHAOS_SEED}"
filter=()
[ -n "${CHAOS_TEST:-}" ] && filter=("$CHAOS_TEST")
exec cargo test -p e2e --test chaos -- --nocapture --test-threads=1 "${filter[@]}"
