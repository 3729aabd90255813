#!/usr/bin/env bash
# `make run`: a local Rivulet cluster on loopback — one coordinator (ZooKeeper protocol) and three
# brokers, one per zone (racks zone-a/b/c), each its own process with its own data directory under
# ./data and its log in ./data/<name>.log. One broker dying is reported and the rest keep running;
# Ctrl-C stops everything cleanly (brokers first, with controlled shutdown, then the coordinator).
#
# `make run-secure` (RUN_SECURE=1): the same cluster with data in ./data-secure, SASL_SSL
# listeners on 127.0.0.1:9192-9194 (also the inter-broker listener, the brokers authenticating as
# User:broker), a generated CA and broker certificate, the ACL authorizer with super users
# `admin` and `broker` (passwords generated once, kept in ./data-secure/secrets), brokers writing
# their znodes with ACLs as the coordinator's digest user `rivulet`, and
# ./data-secure/client.properties for librdkafka (`kcat -F data-secure/client.properties -L`).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release}
SECURE=${RUN_SECURE:-}
BROKERS=3
ZONES=(zone-a zone-b zone-c)
if [ -n "$SECURE" ]; then
  DATA=${RUN_DATA:-$PWD/data-secure}
  COORD=127.0.0.1:2281; COORD_ADMIN=8181; KAFKA_BASE=9192; ADMIN_BASE=8192; WHAT="make run-secure"
else
  DATA=${RUN_DATA:-$PWD/data}
  COORD=127.0.0.1:2181; COORD_ADMIN=8081; KAFKA_BASE=9092; ADMIN_BASE=8092; WHAT="make run"
fi
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)

for port in "${COORD##*:}" "$COORD_ADMIN" $(seq "$KAFKA_BASE" $((KAFKA_BASE + BROKERS - 1))) \
    $(seq "$ADMIN_BASE" $((ADMIN_BASE + BROKERS - 1))); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "$WHAT: port $port on 127.0.0.1 is already in use (another '$WHAT'?); stop it first" >&2
    exit 1
  fi
done

secure_flags=()
if [ -n "$SECURE" ]; then
  command -v openssl >/dev/null || { echo "$WHAT needs openssl (apt-get install openssl)" >&2; exit 1; }
  secrets="$DATA/secrets"
  mkdir -p "$secrets" && chmod 700 "$secrets"
  gen() { [ -s "$secrets/$1" ] || { (umask 077; openssl rand -hex 16 >"$secrets/$1"); }; cat "$secrets/$1"; }
  admin_pw=$(gen admin-password)
  gen broker-password >/dev/null
  gen coordinator-password >/dev/null
  (umask 077; printf 'admin=%s\n' "$admin_pw" >"$secrets/bootstrap-users")
  if [ ! -s "$DATA/ca.pem" ] || [ ! -s "$secrets/broker.key" ]; then
    ossl() { openssl "$@" >/dev/null 2>&1 || { echo "$WHAT: openssl $1 failed" >&2; exit 1; }; }
    ossl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=Rivulet local CA" \
      -keyout "$secrets/ca.key" -out "$DATA/ca.pem"
    ossl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$secrets/broker.key" -out "$secrets/broker.csr"
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$secrets/broker.ext"
    ossl x509 -req -in "$secrets/broker.csr" -CA "$DATA/ca.pem" -CAkey "$secrets/ca.key" -CAcreateserial \
      -days 825 -out "$DATA/broker.pem" -extfile "$secrets/broker.ext"
  fi
  secure_flags=(--ssl-cert-file "$DATA/broker.pem" --ssl-key-file "$secrets/broker.key" --ssl-ca-file "$DATA/ca.pem"
    --authorizer simple --super-users "User:admin;User:broker"
    --inter-broker-sasl-mechanism SCRAM-SHA-512 --inter-broker-sasl-username broker
    --inter-broker-sasl-password-file "$secrets/broker-password"
    --bootstrap-scram-users-file "$secrets/bootstrap-users"
    --zookeeper-set-acl true --coordinator-digest-username rivulet
    --coordinator-digest-password-file "$secrets/coordinator-password")
fi

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

start coordinator "$BIN/rivulet-coordinator" --client-addr "$COORD" --admin-addr "127.0.0.1:$COORD_ADMIN" \
  --data-dir "$DATA/coordinator"
wait_http "http://127.0.0.1:$COORD_ADMIN/readyz" coordinator "$(last_pid)" || {
  echo "coordinator did not start; its log:" >&2; tail -20 "$DATA/coordinator.log" >&2; exit 1; }

for i in $(seq 0 $((BROKERS - 1))); do
  port=$((KAFKA_BASE + i))
  if [ -n "$SECURE" ]; then
    listener=(--listeners "SASL_SSL://127.0.0.1:$port" --inter-broker-listener-name SASL_SSL)
  else
    listener=(--listen-addr "127.0.0.1:$port" --advertised-addr "127.0.0.1:$port")
  fi
  start "broker-$i" "$BIN/rivulet-broker" --broker-id "$i" "${listener[@]}" ${secure_flags[@]+"${secure_flags[@]}"} \
    --admin-addr "127.0.0.1:$((ADMIN_BASE + i))" --data-dir "$DATA/broker-$i" --rack "${ZONES[$i]}" \
    --coordinator "$COORD" --default-replication-factor 3 --min-insync-replicas 2 \
    --controlled-shutdown-timeout-ms 10000
done
bootstrap=
for i in $(seq 0 $((BROKERS - 1))); do
  pid=${pids[$((i + 1))]}
  if ! wait_http "http://127.0.0.1:$((ADMIN_BASE + i))/readyz" "broker-$i" "$pid"; then
    echo "broker-$i did not become ready; its log ($DATA/broker-$i.log):" >&2
    tail -20 "$DATA/broker-$i.log" >&2
    exit 1
  fi
  bootstrap+="${bootstrap:+,}127.0.0.1:$((KAFKA_BASE + i))"
done

if [ -n "$SECURE" ]; then
  (umask 077; cat >"$DATA/client.properties" <<PROPS
# librdkafka properties of the super user admin (kcat -F $DATA/client.properties -L)
bootstrap.servers=$bootstrap
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.username=admin
sasl.password=$admin_pw
ssl.ca.location=$DATA/ca.pem
PROPS
)
  cat <<MSG

Rivulet (secure) is running on loopback (data and logs in $DATA):
  bootstrap    $bootstrap  (SASL_SSL, SCRAM-SHA-512 or PLAIN)
  super user   admin / $admin_pw
  CA           $DATA/ca.pem
  client       $DATA/client.properties (librdkafka format)
  admin        brokers http://127.0.0.1:$ADMIN_BASE/metrics (and +1, +2), coordinator http://127.0.0.1:$COORD_ADMIN/metrics
  coordinator  ZooKeeper protocol on $COORD (znodes written with ACLs by digest user rivulet)

  metadata: kcat -F $DATA/client.properties -L
  produce:  printf 'user-1:hello\\n' | kcat -F $DATA/client.properties -P -t demo -K:
  consume:  kcat -F $DATA/client.properties -C -t demo -o beginning -e -f '%k => %s\\n'
  stop:     Ctrl-C
MSG
else

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
fi

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
