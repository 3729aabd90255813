#!/usr/bin/env bash
# `make run`: a local Rivulet on loopback — a coordinator (ZooKeeper protocol) and a broker
# (Kafka protocol), each with its own data directory under ./data. Ctrl-C stops both cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
DATA=${RUN_DATA:-$PWD/data}
mkdir -p "$DATA/coordinator" "$DATA/broker-0"

pids=()
stopping=
stop() {
  stopping=1
  trap - INT TERM EXIT
  echo; echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped"
}
trap stop INT TERM EXIT

wait_http() { # url name pid
  for _ in $(seq 1 200); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || { echo "$2 exited; see its log above" >&2; exit 1; }
    sleep 0.1
  done
  echo "$2 did not become ready" >&2; exit 1
}

"$BIN/rivulet-coordinator" --client-addr 127.0.0.1:2181 --admin-addr 127.0.0.1:8081 \
  --data-dir "$DATA/coordinator" &
pids+=($!)
wait_http http://127.0.0.1:8081/readyz coordinator "${pids[-1]}"

"$BIN/rivulet-broker" --broker-id 0 --listen-addr 127.0.0.1:9092 --admin-addr 127.0.0.1:8092 \
  --data-dir "$DATA/broker-0" &
pids+=($!)
wait_http http://127.0.0.1:8092/readyz broker "${pids[-1]}"

cat <<MSG

Rivulet is running on loopback (data in $DATA):
  broker       Kafka on 127.0.0.1:9092, admin http://127.0.0.1:8092/metrics
  coordinator  ZooKeeper protocol on 127.0.0.1:2181, admin http://127.0.0.1:8081/metrics
  (the broker runs standalone until cluster mode lands; it does not use the coordinator yet)

  produce:  printf 'user-1:hello\\n' | kcat -P -b 127.0.0.1:9092 -t demo -K:
  consume:  kcat -C -b 127.0.0.1:9092 -t demo -o beginning -e -f '%k => %s\\n'
  metadata: kcat -L -b 127.0.0.1:9092
  zookeeper: echo ruok | nc 127.0.0.1 2181
  stop:     Ctrl-C
MSG
wait -n "${pids[@]}" || true
[ -n "$stopping" ] || echo "a process exited; stopping the rest" >&2
