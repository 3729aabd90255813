#!/usr/bin/env bash
# Runs the README's example commands verbatim against a broker started like `make run` does,
# and checks what they print.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
work=$(mktemp -d)
cleanup() { [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  echo "readme examples: port 9092 is already in use; stop whatever listens there" >&2
  exit 1
fi
"$BIN/rivulet-broker" --data-dir "$work/broker-0" --log-level warn >"$work/broker.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:8092/readyz >/dev/null 2>&1 && break
  sleep 0.1
done

script=$(awk '/<!-- readme-example:start -->/{f=1;next} /<!-- readme-example:end -->/{f=0} f && !/^```/' README.md)
[ -n "$script" ] || { echo "readme examples: no example block found in README.md" >&2; exit 1; }
out=$(bash -euo pipefail -c "$script" 2>&1) || { echo "$out"; cat "$work/broker.log"; exit 1; }
echo "$out"
for want in "user-1 => hello" "user-2 => world" "ready" "broker 0 at 127.0.0.1:9092"; do
  grep -qF "$want" <<<"$out" || { echo "readme examples: expected '$want' in the output" >&2; exit 1; }
done
echo "readme examples: 1 passed, 0 failed"
