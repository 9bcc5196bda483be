#!/usr/bin/env bash
# Apache Flink 2.3 HA end to end on zabd (tests/flink/flink_ha.py), each scenario in turn.
# Usage: run.sh [ZABD_BINARY]; the binary needs the `kerberos` feature.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
zabd=${1:-${ZABD_BIN:-${CARGO_TARGET_DIR:-$top/target}/release/zabd}}
flink=$("$here/get_flink.sh") || exit 1
status=0
echo "== Flink 2.3 Kerberized, on a zabd ensemble with quorum TLS + SASL and client TLS"
timeout 900 python3 "$here/flink_ha.py" "$zabd" "$flink" kerberos || status=1
exit $status
