#!/usr/bin/env bash
# Apache Flink 2.3 HA end to end on zabd (tests/flink/flink_ha.py), each scenario in turn.
# FLINK_HA_SERVER=zookeeper runs them against Apache ZooKeeper 3.8 instead (by hand).
# Usage: run.sh [ZABD_BINARY]; the binary needs the `kerberos` feature.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
zabd=${1:-${ZABD_BIN:-${CARGO_TARGET_DIR:-$top/target}/release/zabd}}
flink=$("$here/get_flink.sh") || exit 1
status=0
echo "== Flink 2.3 Kerberized, on a zabd ensemble with quorum TLS + SASL and client TLS"
timeout 900 python3 "$here/flink_ha.py" "$zabd" "$flink" kerberos || status=1
echo "== Flink 2.3 failovers on a 3-member zabd ensemble with leaderServes=no: zabd leader killed twice (no job restart), all members restarted, JobManager SIGTERM and SIGKILL"
timeout 900 python3 "$here/flink_ha.py" "$zabd" "$flink" failover || status=1
echo "== Flink 2.3 on a standalone zabd: HA znodes, JobManager SIGKILL"
timeout 900 python3 "$here/flink_ha.py" "$zabd" "$flink" standalone || status=1
exit $status
