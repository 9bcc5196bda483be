#!/usr/bin/env bash
# Runs each interop suite (zkCli, Curator, kazoo) against its own fresh zabd on a free
# loopback port, then the data-directory suite (zabd <-> Apache ZooKeeper 3.8, both ways).
# Needs target/release/zabd, Debian's zookeeper + curator jars, and kazoo.

set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
zabd=${ZABD_BIN:-${CARGO_TARGET_DIR:-$top/target}/release/zabd}
work=$(mktemp -d)
J=/usr/share/java
CCP=$J/curator-framework.jar:$J/curator-recipes.jar:$J/curator-client.jar:$J/guava.jar
CCP=$CCP:$J/zookeeper.jar:$J/zookeeper-jute.jar:$J/slf4j-api.jar:$J/slf4j-nop.jar:$J/netty-handler.jar
CCP=$CCP:$J/netty-transport.jar:$J/netty-common.jar:$J/netty-buffer.jar:$J/netty-codec.jar
CCP=$CCP:$J/netty-resolver.jar:$J/netty-transport-native-unix-common.jar
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

# start_zabd NAME [TOML-LINE...]: starts a fresh server, sets $addr.
start_zabd() {
  local name=$1 d=$work/$1
  shift
  mkdir -p "$d"
  printf '%s\n' "client_port = 0" 'client_port_address = "127.0.0.1"' "data_dir = \"$d/data\"" "$@" >"$d/zabd.toml"
  "$zabd" --config "$d/zabd.toml" >"$d/out" 2>"$d/log" &
  pids+=($!)
  for _ in $(seq 1 600); do
    addr=$(sed -n 's/^zabd: serving clients on //p' "$d/out")
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  echo "zabd did not start for $name"; cat "$d/log"; exit 1
}

javac -nowarn -d "$work/classes" -cp "$CCP:$J/commons-cli.jar" "$here/CuratorSuite.java" "$here/DataDirCheck.java" || exit 1
status=0
start_zabd zkcli "enforce_quota = true"
"$here/zkcli_suite.sh" "$addr" || status=1
start_zabd curator
timeout 900 java -cp "$work/classes:$CCP" CuratorSuite "$addr" || status=1
start_zabd kazoo
timeout 900 python3 "$here/kazoo_suite.py" "$addr" || status=1
export zabd ZKCP="$CCP:$J/commons-cli.jar"
"$here/datadir_suite.sh" "$work/classes" || status=1
exit $status
