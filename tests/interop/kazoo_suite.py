#!/usr/bin/env python3
"""Interop suite on kazoo (PyPI): recipes and primitives against a running server.

Usage: kazoo_suite.py HOST:PORT. Prints one line per check and a closing
'N passed, M failed' line; exits non-zero on any failure.
"""
import sys
import threading
import time

import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, results  # noqa: E402
from kazoo.client import KazooClient  # noqa: E402
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError  # noqa: E402

HOSTS = sys.argv[1]
DEADLINE = 60.0
def wait_for(what, cond):
    end = time.time() + DEADLINE
    while time.time() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def client():
    c = KazooClient(hosts=HOSTS, timeout=15)
    c.start(timeout=30)
    return c


def t_basics():
    c = client()
    c.ensure_path("/kz/basic")
    c.create("/kz/basic/a", b"1")
    data, st = c.get("/kz/basic/a")
    assert data == b"1" and st.version == 0, (data, st)
    c.set("/kz/basic/a", b"2", version=0)
    try:
        c.set("/kz/basic/a", b"3", version=0)
        raise AssertionError("expected BadVersion")
    except BadVersionError:
        pass
    try:
        c.create("/kz/basic/a", b"")
        raise AssertionError("expected NodeExists")
    except NodeExistsError:
        pass
    try:
        c.delete("/kz/basic")
        raise AssertionError("expected NotEmpty")
    except NotEmptyError:
        pass
    c.delete("/kz/basic", recursive=True)
    assert c.exists("/kz/basic") is None
    assert c.server_version()[:2] == (3, 9), c.server_version()
    c.stop()


def t_transaction():
    c = client()
    c.ensure_path("/kz/tx")
    t = c.transaction()
    t.create("/kz/tx/a", b"a")
    t.create("/kz/tx/a/lock", b"", ephemeral=True)
    t.check("/kz/tx", 0)
    r = t.commit()
    assert r[0] == "/kz/tx/a" and r[1] == "/kz/tx/a/lock" and r[2] is True, r
    t = c.transaction()
    t.set_data("/kz/tx/a", b"b")
    t.create("/kz/tx/a", b"")
    r = t.commit()
    assert isinstance(r[1], NodeExistsError), r
    assert c.get("/kz/tx/a")[0] == b"a"
    c.stop()


def t_lock():
    c1, c2 = client(), client()
    counter = {"inside": 0, "max": 0, "total": 0}
    guard = threading.Lock()

    def worker(c):
        lock = c.Lock("/kz/lock", "w")
        for _ in range(10):
            with lock:
                with guard:
                    counter["inside"] += 1
                    counter["max"] = max(counter["max"], counter["inside"])
                time.sleep(0.001)
                with guard:
                    counter["inside"] -= 1
                    counter["total"] += 1

    ts = [threading.Thread(target=worker, args=(c,)) for c in (c1, c2)]
    [t.start() for t in ts]
    [t.join(DEADLINE) for t in ts]
    assert counter == {"inside": 0, "max": 1, "total": 20}, counter
    c1.stop()
    c2.stop()


def t_election():
    clients = [client() for _ in range(3)]
    leaders = []
    done = threading.Event()

    def run(i):
        def lead():
            leaders.append(i)
            done.wait(1) if len(leaders) < 3 else None

        clients[i].Election("/kz/election", f"c{i}").run(lead)

    ts = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(3)]
    [t.start() for t in ts]
    wait_for("three leaderships in turn", lambda: len(leaders) == 3)
    assert sorted(leaders) == [0, 1, 2], leaders
    [c.stop() for c in clients]


def t_queue_and_counter():
    c = client()
    q = c.Queue("/kz/queue")
    for i in range(5):
        q.put(f"item{i}".encode())
    got = [q.get() for _ in range(5)]
    assert got == [f"item{i}".encode() for i in range(5)], got
    counter = c.Counter("/kz/counter")
    for _ in range(10):
        counter += 1
    counter -= 3
    assert counter.value == 7, counter.value
    c.stop()


def t_watches():
    c, w = client(), client()
    c.ensure_path("/kz/w")
    seen_data, seen_children = [], []
    w.DataWatch("/kz/w", lambda data, stat: seen_data.append(data))
    w.ChildrenWatch("/kz/w", lambda children: seen_children.append(sorted(children)))
    wait_for("initial callbacks", lambda: seen_data and seen_children)
    c.set("/kz/w", b"x")
    c.create("/kz/w/c1", b"")
    c.create("/kz/w/c2", b"")
    wait_for("data watch", lambda: seen_data[-1] == b"x")
    wait_for("children watch", lambda: seen_children[-1] == ["c1", "c2"])
    c.stop()
    w.stop()


def t_ephemeral_goes_with_session():
    a, b = client(), client()
    a.create("/kz/eph", b"", ephemeral=True)
    gone = threading.Event()

    def watch(event):
        if event.type == "DELETED":
            gone.set()

    assert b.exists("/kz/eph", watch=watch) is not None
    a.stop()
    assert gone.wait(DEADLINE), "ephemeral deleted when the session closed"
    b.stop()


def t_acl_and_auth():
    from kazoo.security import make_digest_acl
    c = client()
    c.add_auth("digest", "bob:pw")
    acl = make_digest_acl("bob", "pw", all=True)
    c.create("/kz/secret", b"s", acl=[acl])
    other = client()
    try:
        other.get("/kz/secret")
        raise AssertionError("expected NoAuth")
    except Exception as e:
        assert type(e).__name__ == "NoAuthError", e
    other.add_auth("digest", "bob:pw")
    assert other.get("/kz/secret")[0] == b"s"
    acls, _ = c.get_acls("/kz/secret")
    assert acls[0].id.id == acl.id.id, acls
    c.stop()
    other.stop()


for name, fn in [
    ("basics and error codes", t_basics),
    ("transaction", t_transaction),
    ("Lock: mutual exclusion over 20 critical sections", t_lock),
    ("Election: leadership passes to every candidate", t_election),
    ("Queue and Counter", t_queue_and_counter),
    ("DataWatch and ChildrenWatch", t_watches),
    ("ephemeral node goes with its session", t_ephemeral_goes_with_session),
    ("digest ACL and auth", t_acl_and_auth),
]:
    check(name, fn)

print(f"kazoo: {results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
