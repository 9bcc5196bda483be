#!/usr/bin/env bash
# Runs each interop suite (zkCli, Curator, kazoo) against its own fresh zabd on a free
# loopback port, then each again against its own 3-member ensemble, then a mixed
# zabd + ZooKeeper ensemble, then the data-directory suite (zabd <-> Apache ZooKeeper 3.8, both ways),
# the operator's surface and security (TLS, SASL, Kerberos).
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
  printf '%s\n' "client_port = 0" 'client_port_address = "127.0.0.1"' "data_dir = \"$d/data\"" "admin.enable = false" 'four_letter_words = ["*"]' "$@" >"$d/zabd.toml"
  "$zabd" --config "$d/zabd.toml" >"$d/out" 2>"$d/log" &
  pids+=($!)
  for _ in $(seq 1 600); do
    addr=$(sed -n 's/^zabd: serving clients on //p' "$d/out")
    [ -n "$addr" ] && return 0
    sleep 0.1
  done
  echo "zabd did not start for $name"; cat "$d/log"; exit 1
}

# start_ensemble NAME [TOML-LINE...]: three members on loopback, waits for one leader and two
# followers; sets $addr to the connect string.
start_ensemble() {
  local name=$1 d=$work/$1 i
  shift
  mkdir -p "$d"
  local ports
  ports=($(python3 -c 'import socket
ss=[socket.socket() for _ in range(9)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(" ".join(str(s.getsockname()[1]) for s in ss))'))
  local servers="[servers]"
  for i in 0 1 2; do
    servers="$servers"$'\n'"$((i + 1)) = \"127.0.0.1:${ports[i * 3]}:${ports[i * 3 + 1]};127.0.0.1:${ports[i * 3 + 2]}\""
  done
  addr=""
  for i in 1 2 3; do
    printf '%s\n' "server_id = $i" "data_dir = \"$d/m$i\"" 'four_letter_words = ["*"]' "admin.enable = false" "$@" "$servers" >"$d/m$i.toml"
    "$zabd" --config "$d/m$i.toml" >"$d/m$i.out" 2>"$d/m$i.log" &
    pids+=($!)
    addr="$addr${addr:+,}127.0.0.1:${ports[(i - 1) * 3 + 2]}"
  done
  python3 - "$addr" <<'PY' || { echo "ensemble $name did not settle"; tail -20 "$d"/m*.log; exit 1; }
import socket, sys, time
def mode(a):
    h, p = a.split(":")
    try:
        s = socket.create_connection((h, int(p)), timeout=5)
        s.sendall(b"srvr"); out = b""
        while True:
            b = s.recv(4096)
            if not b: break
            out += b
        return [l[6:] for l in out.decode().splitlines() if l.startswith("Mode: ")][0]
    except Exception:
        return None
end = time.time() + 120
while time.time() < end:
    modes = sorted(str(mode(a)) for a in sys.argv[1].split(","))
    if modes == ["follower", "follower", "leader"]:
        sys.exit(0)
    time.sleep(0.2)
sys.exit(1)
PY
}

javac -nowarn -d "$work/classes" -cp "$CCP:$J/commons-cli.jar" "$here/CuratorSuite.java" "$here/DataDirCheck.java" \
  "$here/EnsembleTracker.java" "$here/FailoverClients.java" "$here/LocalSessions.java" || exit 1
status=0
start_zabd zkcli "enforce_quota = true"
"$here/zkcli_suite.sh" "$addr" || status=1
start_zabd curator
timeout 900 java -cp "$work/classes:$CCP" CuratorSuite "$addr" || status=1
start_zabd kazoo
timeout 900 python3 "$here/kazoo_suite.py" "$addr" || status=1
echo "== the same suites against a 3-member zabd ensemble (connect string of all three)"
start_ensemble zkcli-ensemble "enforce_quota = true"
"$here/zkcli_suite.sh" "$addr" || status=1
start_ensemble curator-ensemble
timeout 900 java -cp "$work/classes:$CCP" CuratorSuite "$addr" || status=1
start_ensemble kazoo-ensemble
timeout 900 python3 "$here/kazoo_suite.py" "$addr" || status=1
echo "== local sessions (localSessionsEnabled) on a 3-member ensemble, through the Java client"
start_ensemble local-sessions "local_sessions = true"
timeout 600 java -cp "$work/classes:$CCP" LocalSessions "$addr" no-upgrading || status=1
start_ensemble local-upgrading "local_sessions = true" "local_sessions_upgrading = true"
timeout 600 java -cp "$work/classes:$CCP" LocalSessions "$addr" upgrading || status=1
echo "== /zookeeper/config beside Apache ZooKeeper 3.8, and Curator's ensemble tracker through member kills"
mkdir -p "$work/tracker"
timeout 900 java -cp "$work/classes:$CCP" EnsembleTracker "$zabd" "$work/tracker" "$CCP:$J/commons-cli.jar" || status=1
export zabd ZKCP="$CCP:$J/commons-cli.jar"
echo "== a mixed ensemble: two zabd members and one Apache ZooKeeper 3.8 member"
timeout 900 "$here/mixed_ensemble.sh" || status=1
"$here/datadir_suite.sh" "$work/classes" || status=1
echo "== a live Apache ZooKeeper 3.8 ensemble replaced by zabd member by member under a writing client, then rolled back"
timeout 900 python3 "$here/migrate_suite.py" "$zabd" "$CCP:$J/commons-cli.jar" || status=1
echo "== dynamic reconfiguration on a zabd ensemble: a joiner added, the leader removed, role changes, -members, zkCli (kazoo + 2 Curator clients writing)"
timeout 900 python3 "$here/reconfig_suite.py" "$zabd" "$CCP:$J/commons-cli.jar" "$work/classes" zabd || status=1
echo "== one zabd member (standaloneEnabled=false) grown to three by reconfig, then its leader removed"
timeout 900 python3 "$here/reconfig_suite.py" "$zabd" "$CCP:$J/commons-cli.jar" "$work/classes" grow || status=1
echo "== reconfig in a mixed ensemble: a ZooKeeper leader adds zabd and removes itself, a zabd leader adds ZooKeeper"
timeout 900 python3 "$here/reconfig_suite.py" "$zabd" "$CCP:$J/commons-cli.jar" "$work/classes" mixed || status=1
echo "== live migration by reconfig: Apache ZooKeeper 3.8 ensemble -> zabd member by member, then rolled back, clients connected throughout"
timeout 900 python3 "$here/reconfig_suite.py" "$zabd" "$CCP:$J/commons-cli.jar" "$work/classes" migrate || status=1
echo "== kazoo's own test suite (its PyPI package, its harness's 3-member ensemble started as zabd), TestReconfig included"
# Left out: TestSSLClient (kazoo's harness makes X.509 v1 certificates, which rustls
# refuses) and TestSASLGSSAPIAuthentication (it needs kazoo's own KAZOOTEST.ORG realm and
# keytabs, not built here); zabd's TLS and Kerberos are tested with kazoo and zkCli in
# security_suite.py.
timeout 900 "$here/kazoo_own_tests.sh" "$zabd" "not TestSSLClient and not TestSASLGSSAPIAuthentication" || status=1
echo "== a rolling restart of a zabd ensemble under a writing client: each member stopped, then each killed"
timeout 900 python3 "$here/migrate_suite.py" "$zabd" "$CCP:$J/commons-cli.jar" rolling || status=1
echo "== the operator's surface beside Apache ZooKeeper 3.8: four-letter words, AdminServer, mntr, Prometheus"
OPCP=$CCP:$J/commons-cli.jar:$J/jetty9-server.jar:$J/jetty9-servlet.jar:$J/jetty9-http.jar:$J/jetty9-util.jar
OPCP=$OPCP:$J/jetty9-io.jar:$J/jetty9-security.jar:$J/servlet-api.jar:$J/jackson-core.jar:$J/jackson-databind.jar
OPCP=$OPCP:$J/jackson-annotations.jar:$J/snappy-java.jar:$J/metrics-core.jar
timeout 900 python3 "$here/operator_suite.py" "$zabd" "$OPCP" || status=1
echo "== leader kill -9 under 9 writing Curator clients: no client on a surviving member notices (zabd), nobody with leaderServes=no"
timeout 900 python3 "$here/failover_suite.py" "$zabd" "$CCP" "$work/classes" zabd 2 || status=1
timeout 900 python3 "$here/failover_suite.py" "$zabd" "$CCP" "$work/classes" zabd-leaderserves-no 2 || status=1
echo "== the same against Apache ZooKeeper 3.8, recorded for comparison (not checked)"
timeout 900 python3 "$here/failover_suite.py" "$zabd" "$CCP" "$work/classes" zookeeper 1 || status=1
echo "== a mixed zabd + Apache ZooKeeper 3.8 ensemble with quorum SASL (DIGEST-MD5) required both ways"
timeout 900 python3 "$here/mixed_secure.py" "$zabd" "$CCP" || status=1
echo "== the same with quorum Kerberos (GSSAPI) against a throwaway KDC"
timeout 900 python3 "$here/mixed_secure.py" "$zabd" "$CCP" kerberos || status=1
echo "== the same with quorum TLS (sslQuorum, PKCS12 stores) and DIGEST-MD5 inside it"
timeout 900 python3 "$here/mixed_secure.py" "$zabd" "$CCP" tls || status=1
echo "== security: TLS, x509, SASL DIGEST-MD5 and Kerberos through zkCli and kazoo, with a throwaway KDC"
timeout 900 python3 "$here/security_suite.py" "$zabd" "$CCP" || status=1
exit $status
