#!/usr/bin/env bash
# kazoo's own tests, from its PyPI package, against a 3-member zabd ensemble: kazoo's test
# harness (kazoo.testing) starts the members, through kazoo_shim/java, which starts zabd on
# the harness's zoo.cfg. The tests run in a virtualenv of their own (kazoo's harness needs
# pyOpenSSL before 24.3 and pyjks, which would clash with the system's packages).
# Usage: kazoo_own_tests.sh ZABD_BIN PYTEST_K_EXPRESSION [TEST_FILE...] (files under
# kazoo/tests; default: all of them). Skipped tests are listed with kazoo's reason (-rs).
set -u
here=$(cd "$(dirname "$0")" && pwd)
zabd=$1
select=$2
shift 2
files=("$@")
venv=${KAZOO_VENV:-/tmp/zabd-kazoo-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" || exit 1
"$venv/bin/python" -c 'import kazoo, pytest, OpenSSL, jks, objgraph, gevent, eventlet, puresasl' 2>/dev/null ||
  "$venv/bin/pip" install -q kazoo pytest "pyopenssl<24.3" pyjks objgraph gevent eventlet pure-sasl || exit 1
# Three members take ports offset..offset+24: find a block of free loopback ports.
offset=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randrange(30000, 60000, 10)
    ok = True
    for p in range(base, base + 30):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        finally:
            s.close()
        if not ok:
            break
    if ok:
        print(base)
        break
PY
)
kz=$("$venv/bin/python" -c 'import kazoo, os; print(os.path.dirname(kazoo.__file__))')
if [ ${#files[@]} -eq 0 ]; then
  files=($(cd "$kz/tests" && ls test_*.py))
fi
work=$(mktemp -d /tmp/zabd-kazoo-own-XXXXXX)
cd "$work" || exit 1
# CI=1: kazoo's build checks run too (the version zabd reports against ZOOKEEPER_VERSION).
CI=1 ZABD_BIN=$zabd PATH="$here/kazoo_shim:$PATH" ZOOKEEPER_VERSION=3.9.2 \
  ZOOKEEPER_CLASSPATH=/usr/share/java/zookeeper.jar ZOOKEEPER_PORT_OFFSET=$offset \
  timeout 900 "$venv/bin/python" -m pytest -q -rs -p no:warnings -p no:cacheprovider ${KAZOO_PYTEST_FLAGS:-} \
  "${files[@]/#/$kz/tests/}" -k "$select"
