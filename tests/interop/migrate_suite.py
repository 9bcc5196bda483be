#!/usr/bin/env python3
"""docs/operations.md's move from a live Apache ZooKeeper 3.8 ensemble to zabd, as a test:
three ZooKeeper members under a writing kazoo client (connect string of all three) are
replaced one at a time by zabd members on the same zoo.cfg and the same data directory
(stop the ZooKeeper member, start zabd on its files, wait until it serves and has caught
up), then the same in reverse (rollback to ZooKeeper). At the end every acknowledged write
is there, the client's session never expired (its ephemeral is still there), and each
step's members agree on zxid and data.

With `rolling`, the same for a rolling restart of zabd itself (docs/operations.md): three
zabd members under the same client are restarted one at a time, first each stopped as an
operator stops it (SIGTERM), then each killed (SIGKILL), each started again on its files.

Each step prints how long it took (stop to all three agreeing on the zxid), the writes
acknowledged during it, and the connection states the client went through.

Usage: migrate_suite.py ZABD_BIN ZK_CLASSPATH [rolling]
"""
import os, signal, socket, subprocess, sys, tempfile, threading, time
from kazoo.client import KazooClient, KazooState
from kazoo.retry import KazooRetry

zabd, zkcp = sys.argv[1], sys.argv[2]
rolling = len(sys.argv) > 3 and sys.argv[3] == "rolling"
# ZooKeeper's own log through a simple slf4j binding, so that a failed step can be read.
logcp = "/usr/share/java/maven3-slf4j-provider.jar:/usr/share/java/maven-shared-utils.jar:/usr/share/java/jansi.jar"
if all(os.path.exists(j) for j in logcp.split(":")):
    zkcp = zkcp.replace("/usr/share/java/slf4j-nop.jar", logcp)
import logging
logging.basicConfig(level=logging.CRITICAL)
work = tempfile.mkdtemp(prefix="zabd-migrate-")
procs = {}
failures = []

def ok(cond, what):
    print(("ok - " if cond else "FAILED - ") + what, flush=True)
    if not cond:
        failures.append(what)

ss = [socket.socket() for _ in range(9)]
for s in ss:
    s.bind(("127.0.0.1", 0))
ports = [s.getsockname()[1] for s in ss]
for s in ss:
    s.close()
client = lambda i: ports[(i - 1) * 3 + 2]
for i in (1, 2, 3):
    d = f"{work}/m{i}"
    os.makedirs(d)
    open(f"{d}/myid", "w").write(f"{i}\n")
    with open(f"{work}/m{i}.cfg", "w") as f:
        f.write(f"tickTime=500\ninitLimit=20\nsyncLimit=5\ndataDir={d}\nclientPort={client(i)}\n"
                f"clientPortAddress=127.0.0.1\n4lw.commands.whitelist=*\nadmin.enableServer=false\n")
        for j in (1, 2, 3):
            f.write(f"server.{j}=127.0.0.1:{ports[(j-1)*3]}:{ports[(j-1)*3+1]};127.0.0.1:{client(j)}\n")

def start(i, kind):
    log = open(f"{work}/m{i}.{kind}.log", "a")
    if kind == "zk":
        cmd = ["java", "-Xmx512m", "-cp", zkcp, "org.apache.zookeeper.server.quorum.QuorumPeerMain", f"{work}/m{i}.cfg"]
    else:
        cmd = [zabd, "--config", f"{work}/m{i}.cfg"]
    procs[i] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)

def stop(i, sig=signal.SIGTERM):
    p = procs.pop(i)
    p.send_signal(sig)  # SIGTERM: as an operator stops a member
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()

def word(i, w):
    try:
        s = socket.create_connection(("127.0.0.1", client(i)), timeout=10)
        s.sendall(w.encode())
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
        return out.decode()
    except OSError:
        return ""

def stat(i):
    t = word(i, "srvr")
    mode = [l[6:] for l in t.splitlines() if l.startswith("Mode: ")]
    zxid = [int(l[6:], 16) for l in t.splitlines() if l.startswith("Zxid: ")]
    return (mode[0] if mode else None, zxid[0] if zxid else None)

def wait_serving(i, deadline=120):
    end = time.time() + deadline
    while time.time() < end:
        if stat(i)[0] in ("leader", "follower"):
            return True
        time.sleep(0.2)
    return False

def wait_caught_up(deadline=120):
    end = time.time() + deadline
    while time.time() < end:
        s = [stat(i) for i in (1, 2, 3)]
        if all(m in ("leader", "follower") for m, _ in s) and len({z for _, z in s}) == 1:
            return True
        time.sleep(0.2)
    return False

acked, errors, states = [], [], []
stop_writing = threading.Event()

try:
    first = "zabd" if rolling else "zk"
    for i in (1, 2, 3):
        start(i, first)
    ok(all(wait_serving(i) for i in (1, 2, 3)), f"three {first} members serve")
    connect = ",".join(f"127.0.0.1:{client(i)}" for i in (1, 2, 3))
    kz = KazooClient(hosts=connect, timeout=30, connection_retry=KazooRetry(max_tries=-1, max_delay=1),
                     command_retry=KazooRetry(max_tries=-1, max_delay=1, deadline=60))
    kz.add_listener(lambda s: states.append(s))
    kz.start(timeout=60)
    kz.ensure_path("/migrate")
    kz.create("/migrate-owner", b"", ephemeral=True)
    session = kz.client_id[0]

    def writer():
        n = 0
        while not stop_writing.is_set() and n < 100000:
            p = f"/migrate/w{n:06d}"
            try:
                kz.retry(kz.create, p, b"v")
                acked.append(p)
            except Exception as e:  # a write whose outcome is unknown is not counted
                if "NodeExists" in type(e).__name__:
                    acked.append(p)
                else:
                    errors.append(repr(e))
            n += 1
            time.sleep(0.005)
    t = threading.Thread(target=writer)
    t.start()
    time.sleep(1)

    def replace(order, to, sig=signal.SIGTERM):
        for i in order:
            before, seen, t0 = len(acked), len(states), time.time()
            role = stat(i)[0]
            stop(i, sig)
            start(i, to)
            ok(wait_serving(i), f"member {i} ({role} before) serves as {to}")
            ok(wait_caught_up(), f"all three agree on the zxid after member {i} became {to}")
            took = time.time() - t0
            during = len(acked) - before
            end = time.time() + 60
            while len(acked) < before + 20 and time.time() < end:
                time.sleep(0.1)
            ok(len(acked) >= before + 20, f"writes go on after member {i} became {to}")
            how = "killed" if sig == signal.SIGKILL else "stopped"
            print(f"step: member {i} ({role}) {how}, started as {to}: {took:.1f} s, "
                  f"{during} writes acknowledged meanwhile, client states {states[seen:] or 'none'}",
                  flush=True)

    if rolling:
        replace((1, 2, 3), "zabd")
        replace((1, 2, 3), "zabd", signal.SIGKILL)
        ok(all(word(i, "srvr").find("zabd") >= 0 for i in (1, 2, 3)), "the ensemble is still all zabd")
    else:
        replace((1, 2, 3), "zabd")
        ok(all(word(i, "srvr").find("zabd") >= 0 for i in (1, 2, 3)), "the ensemble is all zabd")
        replace((3, 2, 1), "zk")
        ok(all(word(i, "srvr").find("zabd") < 0 for i in (1, 2, 3)), "rolled back: the ensemble is all ZooKeeper")
    stop_writing.set()
    t.join(timeout=120)
    ok(not errors, f"no write failed for good ({errors[:3]})")
    ok(kz.client_id[0] == session and kz.exists("/migrate-owner") is not None,
       "the client's session lived through it all (its ephemeral is there)")
    ok(KazooState.LOST not in states, f"the client never saw LOST ({states})")
    kz.sync("/migrate")
    present = set(kz.get_children("/migrate"))
    missing = [p for p in acked if p.rsplit("/", 1)[1] not in present]
    ok(not missing and len(acked) > 100, f"every acknowledged write is there ({len(acked)} writes, {len(missing)} missing)")
    kz.stop()
finally:
    stop_writing.set()
    for p in procs.values():
        p.kill()
        p.wait()
    if not os.environ.get("KEEP_WORK"):
        subprocess.run(["rm", "-rf", work])
print(f"{'rolling restart' if rolling else 'migration'} suite: {len(failures)} failed")
sys.exit(1 if failures else 0)
