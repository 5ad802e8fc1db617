#!/usr/bin/env bash
# Runs the whole system locally: nats-server, the five services, demo data, two demo orders.
# Ctrl-C stops everything cleanly. Data and logs go under ./data (RUN_DIR to change).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${RUN_DIR:-$PWD/data}
NATS_PORT=${NATS_PORT:-4222}
export ADMIN_TOKEN=${ADMIN_TOKEN:-dev-admin-token}
export NATS_URL="nats://127.0.0.1:${NATS_PORT}"
mkdir -p "$RUN_DIR/logs"

scripts/ensure-nats.sh >/dev/null
echo "==> building the services"
cargo build --quiet --bins

pids=()
stop() {
  echo; echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped; data and logs are in $RUN_DIR"
}
trap stop EXIT
trap 'exit 130' INT TERM

echo "==> starting nats-server on port $NATS_PORT (JetStream store $RUN_DIR/nats)"
nats-server -c nats/nats.conf -p "$NATS_PORT" -sd "$RUN_DIR/nats" >"$RUN_DIR/logs/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done

declare -A ports=([order]=8080 [payment]=8081 [stock]=8082 [coupon]=8083 [point]=8084)
for svc in payment stock coupon point order; do
  DATA_DIR="$RUN_DIR/$svc" HTTP_ADDR="127.0.0.1:${ports[$svc]}" RUST_LOG=${RUST_LOG:-info} \
    "target/debug/$svc" serve >"$RUN_DIR/logs/$svc.log" 2>&1 &
  pids+=($!)
done
for svc in payment stock coupon point order; do
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:${ports[$svc]}/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:${ports[$svc]}/readyz" >/dev/null || { echo "$svc did not become ready; see $RUN_DIR/logs/$svc.log"; exit 1; }
done
echo "==> all five services ready"

auth=(-H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json')
echo "==> seeding demo data"
curl -fsS "${auth[@]}" -X POST localhost:8082/stock/apple/restock -d '{"qty":100}' >/dev/null
curl -fsS "${auth[@]}" -X POST localhost:8082/stock/pear/restock -d '{"qty":3}' >/dev/null
curl -sS "${auth[@]}" -X POST localhost:8083/coupons -d '{"couponId":"WELCOME10","userId":"alice","discount":100,"expiresAt":null}' >/dev/null
curl -fsS "${auth[@]}" -X POST localhost:8084/points/alice/credit -d '{"points":500}' >/dev/null

place() {
  curl -sS -X POST 'localhost:8080/orders?wait=10s' -H 'Content-Type: application/json' -d "$1"
}
echo "==> placing an order that completes (2 apples, coupon WELCOME10, 100 points)"
ok=$(place '{"userId":"alice","items":[{"sku":"apple","qty":2,"price":500}],"couponId":"WELCOME10","points":100,"amount":800}')
echo "    $ok"
echo "==> placing an order that fails (10 pears, only 3 in stock) and is compensated"
bad=$(place '{"userId":"alice","items":[{"sku":"pear","qty":10,"price":300}],"couponId":null,"points":50,"amount":2950}')
echo "    $bad"
id_of() { sed -E 's/.*"orderId":"([^"]+)".*/\1/' <<<"$1"; }
cat <<MSG

Everything is running. Look here:
  dashboard           http://127.0.0.1:8080/
  completed order     http://127.0.0.1:8080/orders/$(id_of "$ok")/timeline
  failed order        http://127.0.0.1:8080/orders/$(id_of "$bad")/timeline
  orders              http://127.0.0.1:8080/orders
  balances            http://127.0.0.1:8084/points/alice   http://127.0.0.1:8082/stock/pear
  metrics             http://127.0.0.1:8080/metrics
  logs                $RUN_DIR/logs/
  data platform feed  $RUN_DIR/order/dataplatform.jsonl
Place more:  curl -X POST 'localhost:8080/orders?wait=10s' -H 'Content-Type: application/json' \\
               -d '{"userId":"alice","items":[{"sku":"apple","qty":1,"price":500}],"couponId":null,"points":0,"amount":500}'
Press Ctrl-C to stop.
MSG
wait "${pids[0]}"
