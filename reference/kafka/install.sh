#!/usr/bin/env bash
# Resolves Apache Kafka (broker, tools, Java client; version pinned in pom.xml) into
# ~/.cache/rivulet-kafka/<version>/libs with Maven, compiles the Java client suite into
# .../classes, and downloads the Go suite's modules into GOMODCACHE. Idempotent: a warm cache
# (same pom, same Java sources) returns at once.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
cache=${RIVULET_KAFKA_CACHE:-$HOME/.cache/rivulet-kafka}/$version

command -v java >/dev/null || bash "$here/../../scripts/apt-install.sh" openjdk-17-jre-headless
command -v javac >/dev/null || bash "$here/../../scripts/apt-install.sh" openjdk-17-jdk-headless
command -v mvn >/dev/null || bash "$here/../../scripts/apt-install.sh" maven

# resolve POM: its jars (and their dependencies) into ~/.cache/rivulet-kafka/<its version>/libs.
resolve() {
  local pom=$1 v dir stamp
  v=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")
  dir=${RIVULET_KAFKA_CACHE:-$HOME/.cache/rivulet-kafka}/$v
  stamp=$(sha256sum <"$pom" | cut -c1-16)
  if [ "$(cat "$dir/libs/.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "kafka-reference: resolving Apache Kafka $v into $dir/libs"
    rm -rf "$dir/libs.tmp"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/libs.tmp"
    echo "$stamp" >"$dir/libs.tmp/.stamp"
    rm -rf "$dir/libs" && mv "$dir/libs.tmp" "$dir/libs"
  fi
}
resolve "$here/pom.xml"
# Kafka 3.9 (ZooKeeper mode), for the coordinator test.
resolve "$here/pom-3.9.xml"
stamp=$(cat "$cache/libs/.stamp")

# The Java client suite: plain javac against the cached jars (no build tool in the repository).
src=$(find "$here/java" -name '*.java' | sort)
jstamp=$( (echo "$stamp"; cat $src) | sha256sum | cut -c1-16)
if [ "$(cat "$cache/classes/.stamp" 2>/dev/null)" != "$jstamp" ]; then
  echo "kafka-reference: compiling the Java client suite into $cache/classes"
  rm -rf "$cache/classes"
  mkdir -p "$cache/classes"
  javac -Xlint:all -Werror -d "$cache/classes" -cp "$cache/libs/*" $src
  echo "$jstamp" >"$cache/classes/.stamp"
fi

# The Go suite's modules (franz-go, kadm; pinned in go.mod/go.sum) into GOMODCACHE.
if command -v go >/dev/null; then
  (cd "$here/go" && go mod download && go vet ./...)
else
  echo "kafka-reference: go is not installed; the Go suite will fail" >&2
  exit 1
fi
