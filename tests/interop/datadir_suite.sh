#!/usr/bin/env bash
# Data directories move between zabd and Apache ZooKeeper 3.8 both ways, judged by ZooKeeper:
#  1. zabd writes a workload; TxnLogToolkit reads every log with no CRC error and
#     SnapshotFormatter reads every snapshot; ZooKeeper started on a copy resumes zabd's open
#     session and serves the same tree (path, data, every Stat field, ACLs) as zabd does.
#  2. ZooKeeper writes the workload; zabd started on a copy resumes ZooKeeper's open session
#     and serves the same tree as ZooKeeper does.
# Usage: datadir_suite.sh CLASSES_DIR (holding DataDirCheck.class). Needs $zabd and $ZKCP.
set -u
classes=$1
work=$(mktemp -d)
passed=0
failed=0
pids=()
trap 'for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT

ok() { passed=$((passed + 1)); echo "ok - $1"; }
bad() { failed=$((failed + 1)); echo "FAILED - $1"; }
check() { java -cp "$classes:$ZKCP" DataDirCheck "$@"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_zabd DATADIR [ARG...]: sets $addr and $pid.
start_zabd() {
  local out=$work/zabd.$RANDOM dir=$1
  shift
  "$zabd" --client-port 0 --client-address 127.0.0.1 --data-dir "$dir" "$@" >"$out" 2>>"$work/zabd.log" &
  pid=$!; pids+=($pid)
  for _ in $(seq 1 600); do
    addr=$(sed -n 's/^zabd: serving clients on //p' "$out"); [ -n "$addr" ] && return 0; sleep 0.1
  done
  echo "zabd did not start"; tail -20 "$work/zabd.log"; exit 1
}

# start_zk DATADIR: sets $addr and $pid.
start_zk() {
  local port cfg=$work/zoo.$RANDOM.cfg
  port=$(free_port)
  printf 'tickTime=2000\ndataDir=%s\nclientPort=%s\nclientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nadmin.enableServer=false\n' "$1" "$port" >"$cfg"
  java -Xmx512m -cp "$ZKCP" org.apache.zookeeper.server.ZooKeeperServerMain "$cfg" >>"$work/zk.log" 2>&1 &
  pid=$!; pids+=($pid)
  addr=127.0.0.1:$port
  for _ in $(seq 1 600); do
    [ "$(echo ruok | timeout 5 nc -q1 127.0.0.1 "$port" 2>/dev/null)" = imok ] && return 0; sleep 0.1
  done
  echo "ZooKeeper did not start"; tail -20 "$work/zk.log"; exit 1
}

stop() { kill -9 "$1" 2>/dev/null; wait "$1" 2>/dev/null; }

# --- 1. zabd writes, ZooKeeper reads -------------------------------------------------------
# A small snapCount: snapshots taken while the workload runs (from a frozen view of the
# state, written by the snapshot thread) are among those ZooKeeper reads, and it starts
# from the newest.
start_zabd "$work/a" -D zookeeper.snapCount=8
check write "$addr" "$work/session-a" >/dev/null || bad "workload on zabd"
stop "$pid"
crc_ok=1; n=0
for log in "$work"/a/version-2/log.*; do
  out=$(java -cp "$ZKCP" org.apache.zookeeper.server.persistence.TxnLogToolkit "$log" 2>&1)
  if printf '%s' "$out" | grep -q "CRC ERROR" || ! printf '%s' "$out" | grep -q "EOF reached after"; then crc_ok=0; fi
  n=$((n + $(printf '%s' "$out" | sed -n 's/.*EOF reached after \([0-9]*\) txns.*/\1/p')))
done
[ "$crc_ok" = 1 ] && ok "TxnLogToolkit reads zabd's logs ($n txns) with no CRC error" || bad "TxnLogToolkit on zabd's logs"
snap_ok=1; snaps=0
for snap in "$work"/a/version-2/snapshot.*; do
  snaps=$((snaps + 1))
  java -cp "$ZKCP" org.apache.zookeeper.server.SnapshotFormatter "$snap" >/dev/null 2>&1 || snap_ok=0
done
[ "$snap_ok" = 1 ] && [ "$snaps" -ge 2 ] && ok "SnapshotFormatter reads zabd's $snaps snapshots (taken under the workload too)" || bad "SnapshotFormatter on zabd's snapshots ($snaps of them)"
cp -r "$work/a" "$work/a-copy"
start_zk "$work/a-copy"
check resume "$addr" "$work/session-a" && ok "ZooKeeper resumes the session zabd left open" || bad "ZooKeeper resumes zabd's session"
check dump "$addr" >"$work/zk-on-zabd.txt" 2>/dev/null
stop "$pid"
start_zabd "$work/a"
check dump "$addr" >"$work/zabd-on-zabd.txt" 2>/dev/null
stop "$pid"
lines=$(grep -c "^/" "$work/zabd-on-zabd.txt")
if [ "$lines" -gt 10 ] && diff "$work/zabd-on-zabd.txt" "$work/zk-on-zabd.txt" >"$work/diff1"; then
  ok "ZooKeeper on zabd's directory serves the same tree ($lines nodes, all Stat fields, ACLs)"
else
  bad "trees differ on zabd's directory"; head -20 "$work/diff1"
fi

# --- 2. ZooKeeper writes, zabd reads -------------------------------------------------------
start_zk "$work/b"
check write "$addr" "$work/session-b" >/dev/null || bad "workload on ZooKeeper"
stop "$pid"
cp -r "$work/b" "$work/b-copy"
start_zabd "$work/b-copy"
check resume "$addr" "$work/session-b" && ok "zabd resumes the session ZooKeeper left open" || bad "zabd resumes ZooKeeper's session"
check dump "$addr" >"$work/zabd-on-zk.txt" 2>/dev/null
mntr=$(echo mntr | timeout 5 nc -q1 "${addr%:*}" "${addr##*:}")
stop "$pid"
printf '%s' "$mntr" | grep -q "zk_digest_mismatches_count	0" && ok "zabd replays ZooKeeper's logs with matching digests" || bad "digest mismatches replaying ZooKeeper's logs"
start_zk "$work/b"
check dump "$addr" >"$work/zk-on-zk.txt" 2>/dev/null
stop "$pid"
lines=$(grep -c "^/" "$work/zk-on-zk.txt")
if [ "$lines" -gt 10 ] && diff "$work/zk-on-zk.txt" "$work/zabd-on-zk.txt" >"$work/diff2"; then
  ok "zabd on ZooKeeper's directory serves the same tree ($lines nodes)"
else
  bad "trees differ on ZooKeeper's directory"; head -20 "$work/diff2"
fi

echo "datadir: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
