#!/usr/bin/env bash
# `make run`: a local Rivulet cluster on loopback — one coordinator (ZooKeeper protocol) and three
# brokers, one per zone (racks zone-a/b/c), each its own process with its own data directory under
# ./data and its log in ./data/<name>.log. One broker dying is reported and the rest keep running;
# Ctrl-C stops everything cleanly (brokers first, with controlled shutdown, then the coordinator).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
DATA=${RUN_DATA:-$PWD/data}
BROKERS=3
ZONES=(zone-a zone-b zone-c)
COORD=127.0.0.1:2181
mkdir -p "$DATA"

for port in 2181 8081 9092 9093 9094 8092 8093 8094; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "make run: port $port on 127.0.0.1 is already in use (another 'make run'?); stop it first" >&2
    exit 1
  fi
done

# Parallel arrays (no associative arrays or `wait -n -p`: runs on bash 3.2 as shipped by macOS).
pids=()
names=()
cmds=()
stopping=

stop() {
  stopping=1
  trap - INT TERM EXIT
  echo; echo "stopping..."
  local b=() c=() i
  for i in "${!pids[@]}"; do
    kill -0 "${pids[$i]}" 2>/dev/null || continue
    if [ "${names[$i]}" = coordinator ]; then c+=("${pids[$i]}"); else b+=("${pids[$i]}"); fi
  done
  # Brokers hand over leadership through the coordinator, so it stops last.
  [ ${#b[@]} -gt 0 ] && kill -TERM "${b[@]}" 2>/dev/null
  for p in "${b[@]}"; do wait "$p" 2>/dev/null; done
  [ ${#c[@]} -gt 0 ] && kill -TERM "${c[@]}" 2>/dev/null
  for p in "${c[@]}"; do wait "$p" 2>/dev/null; done
  echo "stopped"
  exit 0
}
trap stop INT TERM EXIT

# Each server in its own process group (job control), so a terminal's Ctrl-C reaches only this
# script, which then stops the brokers before the coordinator they hand leadership over through.
set -m

# start NAME CMD...: runs CMD in the background with its output in $DATA/NAME.log.
start() {
  local name=$1; shift
  echo "=== $(date -u +%FT%TZ) $*" >>"$DATA/$name.log"
  "$@" >>"$DATA/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
  cmds+=("$*")
}
last_pid() { echo "${pids[${#pids[@]}-1]}"; }

wait_http() { # url name pid
  for _ in $(seq 1 300); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

start coordinator "$BIN/rivulet-coordinator" --client-addr "$COORD" --admin-addr 127.0.0.1:8081 \
  --data-dir "$DATA/coordinator"
wait_http http://127.0.0.1:8081/readyz coordinator "$(last_pid)" || {
  echo "coordinator did not start; its log:" >&2; tail -20 "$DATA/coordinator.log" >&2; exit 1; }

for i in $(seq 0 $((BROKERS - 1))); do
  start "broker-$i" "$BIN/rivulet-broker" --broker-id "$i" \
    --listen-addr "127.0.0.1:$((9092 + i))" --advertised-addr "127.0.0.1:$((9092 + i))" \
    --admin-addr "127.0.0.1:$((8092 + i))" --data-dir "$DATA/broker-$i" --rack "${ZONES[$i]}" \
    --coordinator "$COORD" --default-replication-factor 3 --min-insync-replicas 2 \
    --controlled-shutdown-timeout-ms 10000
done
bootstrap=
for i in $(seq 0 $((BROKERS - 1))); do
  pid=${pids[$((i + 1))]}
  if ! wait_http "http://127.0.0.1:$((8092 + i))/readyz" "broker-$i" "$pid"; then
    echo "broker-$i did not become ready; its log ($DATA/broker-$i.log):" >&2
    tail -20 "$DATA/broker-$i.log" >&2
    exit 1
  fi
  bootstrap+="${bootstrap:+,}127.0.0.1:$((9092 + i))"
done

cat <<MSG

Rivulet is running on loopback (data and logs in $DATA):
  bootstrap    $bootstrap
  brokers      $(for i in $(seq 0 $((${#pids[@]} - 2))); do printf '%s ' "$i=127.0.0.1:$((9092 + i))(${ZONES[$i]})"; done)
  admin        brokers http://127.0.0.1:8092/metrics (broker 1: 8093, broker 2: 8094; also /readyz), coordinator http://127.0.0.1:8081/metrics
  coordinator  ZooKeeper protocol on $COORD

  produce:  printf 'user-1:hello\\n' | kcat -P -b $bootstrap -t demo -K:
  consume:  kcat -C -b $bootstrap -t demo -o beginning -e -f '%k => %s\\n'
  metadata: kcat -L -b $bootstrap
  zookeeper: curl -s http://127.0.0.1:8081/commands/ruok   (the four-letter words over HTTP)
  stop:     Ctrl-C
MSG

# Keep running while anything is alive; report each exit (kill -9 a broker and it says so).
reported=()
while :; do
  alive=0
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      alive=$((alive + 1))
    elif [ -z "${reported[$i]:-}" ]; then
      reported[$i]=1
      wait "${pids[$i]}" 2>/dev/null
      code=$?
      echo "$(date -u +%T) ${names[$i]} (pid ${pids[$i]}) exited with status $code; the rest keep running." >&2
      echo "  its log: $DATA/${names[$i]}.log; start it again with: ${cmds[$i]}" >&2
    fi
  done
  [ "$alive" -gt 0 ] || { echo "every process has exited" >&2; break; }
  sleep 1
done
