#!/usr/bin/env bash
# Runs the README's example commands verbatim against the cluster `make run` starts
# (scripts/run-local.sh: a coordinator and three brokers on 127.0.0.1:9092-9094) and checks what
# they print.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
work=$(mktemp -d)
cleanup() {
  if [ -n "${pid:-}" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  echo "readme examples: port 9092 is already in use; stop whatever listens there" >&2
  exit 1
fi
BIN=$BIN RUN_DATA="$work/data" scripts/run-local.sh >"$work/run.out" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q "Rivulet is running" "$work/run.out" && break
  kill -0 "$pid" 2>/dev/null || { echo "readme examples: make run's script exited:" >&2; cat "$work/run.out" >&2; exit 1; }
  sleep 0.1
done
grep -q "Rivulet is running" "$work/run.out" || { echo "readme examples: the cluster did not start" >&2; cat "$work/run.out" >&2; exit 1; }

script=$(awk '/<!-- readme-example:start -->/{f=1;next} /<!-- readme-example:end -->/{f=0} f && !/^```/' README.md)
[ -n "$script" ] || { echo "readme examples: no example block found in README.md" >&2; exit 1; }
out=$(bash -euo pipefail -c "$script" 2>&1) || { echo "$out"; cat "$work/run.out"; tail -30 "$work"/data/*.log; exit 1; }
echo "$out"
for want in "user-1 => hello" "user-2 => world" "ready" "imok" "broker 0 at 127.0.0.1:9092" "broker 2 at 127.0.0.1:9094" "replicas: " "(controller)"; do
  grep -qF "$want" <<<"$out" || { echo "readme examples: expected '$want' in the output" >&2; exit 1; }
done
grep -qE 'topic "demo" with 1 partitions' <<<"$out" && grep -qE 'replicas: [0-2],[0-2],[0-2], isrs: [0-2],[0-2],[0-2]$' <<<"$out" || {
  echo "readme examples: expected topic demo with three replicas, all in sync" >&2; exit 1; }
echo "readme examples: 1 passed, 0 failed"
