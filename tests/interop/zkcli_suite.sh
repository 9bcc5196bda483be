#!/usr/bin/env bash
# Interop suite on Apache ZooKeeper's own zkCli (Debian `zookeeper`) against a running server.
# Usage: zkcli_suite.sh HOST:PORT. One line per check, then 'zkcli: N passed, M failed'.
set -u
server=$1
J=/usr/share/java
CP=$J/zookeeper.jar:$J/zookeeper-jute.jar:$J/slf4j-api.jar:$J/slf4j-nop.jar:$J/netty-handler.jar
CP=$CP:$J/netty-transport.jar:$J/netty-common.jar:$J/netty-buffer.jar:$J/netty-codec.jar
CP=$CP:$J/netty-resolver.jar:$J/netty-transport-native-unix-common.jar:$J/commons-cli.jar
passed=0
failed=0

# Runs zkCli commands (one per line on stdin) in one session; prints its output.
zkcli() {
  timeout 120 java -cp "$CP" org.apache.zookeeper.ZooKeeperMain -server "$server" 2>&1 \
    | grep -v -e '^WATCHER::' -e '^WatchedEvent' -e '^Connecting to' -e '^Welcome to' -e '^JLine'
}

# expect NAME PATTERN OUTPUT: PATTERN (grep -E) must occur in OUTPUT.
expect() {
  if printf '%s\n' "$3" | grep -qE -- "$2"; then
    passed=$((passed + 1)); echo "ok - $1"
  else
    failed=$((failed + 1)); echo "FAILED - $1: no /$2/ in:"; printf '%s\n' "$3" | sed 's/^/    /'
  fi
}

out=$(zkcli <<'CMDS'
create /cli "root"
create -s -e /cli/seq- x
create /cli/child c
ls -R /cli
get -s /cli
set -v 0 /cli changed
set -v 0 /cli again
stat /cli
get /cli
quit
CMDS
)
expect "create" 'Created /cli$' "$out"
expect "create -s -e" 'Created /cli/seq-0000000000' "$out"
expect "ls -R" '^/cli/seq-0000000000$' "$out"
expect "get -s shows Stat" 'numChildren = 2' "$out"
expect "set -v with the right version" 'dataVersion = 1' "$out"
expect "set -v with a stale version" 'version No is not valid' "$out"
expect "get after set" '^changed$' "$out"

out=$(zkcli <<'CMDS'
delete /cli
delete /cli/child
ls /cli
deleteall /cli
ls /cli
quit
CMDS
)
expect "delete of a node with children" 'Node not empty: /cli' "$out"
expect "ephemeral gone with its session, delete" '^\[\]$' "$out"
expect "deleteall" 'Node does not exist: /cli' "$out"

out=$(zkcli <<'CMDS'
addauth digest carol:pw
create /acl data
setAcl /acl auth:carol:pw:cdrwa
getAcl /acl
stat /acl
quit
CMDS
)
expect "addauth + setAcl auth: + getAcl" "'digest,'carol:" "$out"
expect "setAcl bumps aclVersion" 'aclVersion = 1' "$out"

out=$(zkcli <<'CMDS'
get /acl
getAcl /zookeeper/config
quit
CMDS
)
expect "ACL denies another session" 'Insufficient permission' "$out"
expect "getAcl of /zookeeper/config" "'world,'anyone" "$out"

# Quotas: the server under test runs with enforce_quota = true.
out=$(zkcli <<'CMDS'
create /qq a
setquota -N 3 /qq
create /qq/1 xx
create /qq/2 yy
create /qq/3 zz
listquota /qq
delete /qq/1
get /zookeeper/quota/qq/zookeeper_stats
quit
CMDS
)
expect "setquota + listquota limits" 'Output quota for /qq count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=3' "$out"
expect "hard count quota refuses the fourth node" 'Quota has exceeded : /qq/3' "$out"
expect "quota stats follow creates" 'Output stat for /qq count=3,bytes=5' "$out"
expect "quota stats follow deletes" '^count=2,bytes=3$' "$out"

echo "zkcli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
