#!/usr/bin/env python3
"""Dynamic reconfiguration against real members, through kazoo, under a writing client whose
connect string names every member that will ever take part.

Scenarios (argument 3):
- `zabd`: three zabd members; a fourth started with a dynamic config naming the three and
  itself syncs as a non-voting follower, is added with `reconfig -add`, the leader is
  removed with `reconfig -remove`, a member becomes an observer and a participant again,
  and `-members` sets the whole membership.
- `migrate`: docs/migration.md's live migration: a three-member Apache ZooKeeper 3.8
  ensemble is replaced one member at a time by three zabd members (start zabd i, wait until
  it follows, add it, remove ZooKeeper member i), then rolled back the same way.
- `mixed`: one reconfig with a ZooKeeper leader and one with a zabd leader.
- `grow`: one zabd member with `standaloneEnabled=false` (a quorum of one, not a
  standalone server) grows to three by `reconfig -add`, as ZooKeeper's documentation
  starts an ensemble.

At the end every acknowledged write is there, the client's session never expired (its
ephemeral is still there), a Curator-like check that the session was never lost (kazoo's
LOST state), and each step prints its time, the writes acknowledged during it and the
connection states the client saw.

Besides the kazoo writer, two Curator 5.4 clients (FailoverClients.java, compiled into
CLASSES) write under the same connect string; none may see LOST, and each step lists the
connection states they saw during it.

Usage: reconfig_suite.py ZABD_BIN ZK_CLASSPATH CLASSES zabd|migrate|mixed|grow
"""
import os, signal, subprocess, sys, tempfile, threading, time
from kazoo.client import KazooClient, KazooState
from kazoo.retry import KazooRetry
from kazoo.exceptions import (NewConfigNoQuorumError, BadVersionError, BadArgumentsError,
                              ConnectionLoss, SessionExpiredError)

zabd, zkcp, classes, scenario = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
logcp = "/usr/share/java/maven3-slf4j-provider.jar:/usr/share/java/maven-shared-utils.jar:/usr/share/java/jansi.jar"
if all(os.path.exists(j) for j in logcp.split(":")):
    zkcp = zkcp.replace("/usr/share/java/slf4j-nop.jar", logcp)
import logging
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ports import free_ports, mode as mode_on_port  # noqa: E402
logging.basicConfig(level=logging.CRITICAL)
work = tempfile.mkdtemp(prefix="zabd-reconfig-")
# A timeout's SIGTERM ends the run through `finally`, which stops every member it started.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
procs, kinds = {}, {}
failures = []
SUPER = ("digest", "super:test")
SUPER_DIGEST = "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
N = 7  # member ids 1..7 may take part
FIRST_VERSION = "100000000"


def ok(cond, what):
    print(("ok - " if cond else "FAILED - ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


ports = free_ports(3 * N)
client = lambda i: ports[(i - 1) * 3 + 2]


def spec(i, role="participant"):
    return f"server.{i}=127.0.0.1:{ports[(i-1)*3]}:{ports[(i-1)*3+1]}:{role};127.0.0.1:{client(i)}"


def configure(i, members, observers=()):
    """Member i's zoo.cfg and its first dynamic file, naming `members` (ids; those in
    `observers` as observers)."""
    d = f"{work}/m{i}"
    os.makedirs(d, exist_ok=True)
    open(f"{d}/myid", "w").write(f"{i}\n")
    dyn = f"{work}/m{i}.cfg.dynamic.{FIRST_VERSION}"
    with open(dyn, "w") as f:
        for j in members:
            f.write(spec(j, "observer" if j in observers else "participant") + "\n")
    with open(f"{work}/m{i}.cfg", "w") as f:
        f.write(f"tickTime=500\ninitLimit=20\nsyncLimit=5\ndataDir={d}\n"
                f"4lw.commands.whitelist=*\nadmin.enableServer=false\nreconfigEnabled=true\n"
                f"standaloneEnabled=false\nDigestAuthenticationProvider.superDigest={SUPER_DIGEST}\n"
                f"dynamicConfigFile={dyn}\n")


def start(i, kind):
    log = open(f"{work}/m{i}.{kind}.log", "a")
    if kind == "zk":
        cmd = ["java", "-Xmx512m", "-cp", zkcp,
               f"-Dzookeeper.DigestAuthenticationProvider.superDigest={SUPER_DIGEST}",
               "org.apache.zookeeper.server.quorum.QuorumPeerMain", f"{work}/m{i}.cfg"]
    else:
        cmd = [zabd, "--config", f"{work}/m{i}.cfg"]
    procs[i] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    kinds[i] = kind


def stop(i, sig=signal.SIGTERM):
    p = procs.pop(i)
    p.send_signal(sig)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def mode(i):
    return mode_on_port(client(i))


def wait_for(cond, deadline=120):
    end = time.time() + deadline
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False


def leader_of(ids):
    for i in ids:
        if mode(i) == "leader":
            return i
    return None


def config_seen(i):
    """/zookeeper/config as member i serves it (its own connection)."""
    kz = KazooClient(hosts=f"127.0.0.1:{client(i)}", timeout=10,
                     connection_retry=KazooRetry(max_tries=3))
    try:
        kz.start(timeout=30)
        kz.sync("/")
        return kz.get("/zookeeper/config")[0].decode()
    except Exception as e:
        return f"<{e!r}>"
    finally:
        try:
            kz.stop()
            kz.close()
        except Exception:
            pass


def zkcli(i, commands, errors=False):
    """Apache ZooKeeper's zkCli against member i, one session for all the commands: what it
    prints (with `errors`, its error stream too)."""
    p = subprocess.run(["java", "-cp", zkcp, "org.apache.zookeeper.ZooKeeperMain", "-server",
                        f"127.0.0.1:{client(i)}"], input="\n".join(commands + ["quit"]) + "\n",
                       capture_output=True, text=True, timeout=120)
    return p.stdout + (p.stderr if errors else "")


def members_in(text):
    return sorted(int(l.split("=")[0][7:]) for l in text.splitlines() if l.startswith("server."))


def voters_in(text):
    return sorted(int(l.split("=")[0][7:]) for l in text.splitlines()
                  if l.startswith("server.") and ":participant" in l)


acked, errors, states = [], [], []
curator_states = []  # (time, "client i STATE")
stop_writing = threading.Event()
connect = ",".join(f"127.0.0.1:{client(i)}" for i in range(1, N + 1))


def writer(kz):
    n = 0
    while not stop_writing.is_set() and n < 200000:
        try:
            kz.create(f"/reconfig/w{n:07d}", b"x")
            acked.append(n)
        except Exception as e:
            errors.append(repr(e))
        n += 1
        time.sleep(0.005)


def reconfig(admin, done=None, **kw):
    """A reconfig through the admin client, retried while the ensemble settles. A reconfig
    that removes the member the client is on can end its connection before the answer
    (ZooKeeper's leader closes its clients): then `done(text)` of /zookeeper/config tells
    whether it took effect."""
    last = None
    for _ in range(60):
        try:
            data, _ = admin.reconfig(kw.get("joining"), kw.get("leaving"), kw.get("new_members"),
                                     kw.get("from_config", -1))
            return data.decode()
        except NewConfigNoQuorumError as e:
            last = e
            time.sleep(1)
        except (ConnectionLoss, SessionExpiredError) as e:
            last = e
            print(f"# reconfig: {e!r}; looking at /zookeeper/config", flush=True)
            time.sleep(1)
            if done is not None:
                try:
                    admin.sync("/zookeeper/config")
                    text = admin.get("/zookeeper/config")[0].decode()
                    if done(text):
                        return text
                except Exception as e2:
                    print(f"# reading /zookeeper/config: {e2!r}", flush=True)
    raise last


def step(name, action, members_after):
    """Runs one step and reports its time, the writes acknowledged during it, and the
    client's states; then waits until every member agrees on the membership."""
    t0, a0, s0 = time.time(), len(acked), len(states)
    action()
    agreed = wait_for(lambda: all(members_in(config_seen(i)) == sorted(members_after)
                                  for i in members_after), 120)
    took = time.time() - t0
    seen = [what for at, what in list(curator_states) if at >= t0]
    print(f"# step {name}: {took:.1f} s, {len(acked) - a0} kazoo writes acknowledged during it, "
          f"kazoo states {[str(s) for s in states[s0:]] or 'none'}, "
          f"Curator states {seen or 'none'}", flush=True)
    ok(agreed, f"{name}: every member serves the membership {sorted(members_after)}")


def add(admin, i, role="participant"):
    return reconfig(admin, done=lambda t: spec(i, role) in t.splitlines(), joining=spec(i, role))


def remove(admin, i):
    return reconfig(admin, done=lambda t: i not in members_in(t), leaving=str(i))


def join(i, kind, current, role="participant"):
    """Starts member i with a dynamic config of the current members plus itself, and
    waits until it follows (as a non-voting follower) or observes."""
    configure(i, sorted(current + [i]), [i] if role == "observer" else [])
    start(i, kind)
    return wait_for(lambda: mode(i) in ("follower", "observer"), 120)


def run_zabd(admin):
    current = [1, 2, 3]
    # A data watch on /zookeeper/config (kazoo sets it again after each event): one event
    # per committed change, each with the node's new mzxid.
    seen = []
    admin.DataWatch("/zookeeper/config", lambda data, st: seen.append(st.mzxid if st else None))
    ok(wait_for(lambda: len(seen) == 1, 30), "a watch on /zookeeper/config is set")
    ok(join(4, "zabd", current), "a zabd member started with the three and itself syncs without a vote")
    step("add zabd 4", lambda: ok("server.4=" in add(admin, 4), "reconfig -add 4 answers the new membership"), [1, 2, 3, 4])
    version = int(config_seen(4).splitlines()[-1].split("=")[1], 16)
    ok(wait_for(lambda: len(seen) == 2 and seen[-1] == version, 30),
       f"the watch fired for the change, at its zxid ({[hex(z or 0) for z in seen]}, version {version:#x})")
    current = [1, 2, 3, 4]
    text = config_seen(4)
    ok(voters_in(text) == [1, 2, 3, 4] and "version=" in text, f"/zookeeper/config names four voters and a version: {text!r}")
    leader = leader_of(current)
    ok(leader is not None, f"a leader among {current}: {leader}")
    step(f"remove the leader {leader}", lambda: remove(admin, leader), [i for i in current if i != leader])
    current = [i for i in current if i != leader]
    ok(wait_for(lambda: leader_of(current) is not None, 60), f"a new leader among {current}")
    stop(leader)
    # A participant becomes an observer and back.
    x = [i for i in current if mode(i) == "follower"][0]
    step(f"make {x} an observer", lambda: add(admin, x, "observer"), current)
    ok(wait_for(lambda: mode(x) == "observer", 60), f"member {x} observes")
    ok(sorted(voters_in(config_seen(x))) == sorted(i for i in current if i != x), "it is no voter any more")
    step(f"make {x} a participant again", lambda: add(admin, x), current)
    ok(wait_for(lambda: mode(x) == "follower", 60), f"member {x} follows again")
    # -from with a stale version; -members with the whole membership.
    version = int(config_seen(current[0]).splitlines()[-1].split("=")[1], 16)
    try:
        reconfig(admin, joining=spec(7), from_config=version + 1)
        ok(False, "a reconfig from a future version is refused")
    except BadVersionError:
        ok(True, "a reconfig from a future version is refused (BadVersion)")
    try:
        reconfig(admin, joining="some thing")
        ok(False, "a malformed joining server is refused")
    except BadArgumentsError:
        ok(True, "a malformed joining server is refused (BadArguments)")
    members = ",".join(spec(i) for i in current)
    step("-members with the same three", lambda: reconfig(admin, new_members=members, from_config=version), current)
    # The files say the membership: zoo.cfg names a dynamic file holding it.
    for i in current:
        cfg = open(f"{work}/m{i}.cfg").read()
        dyn = [l.split("=", 1)[1] for l in cfg.splitlines() if l.startswith("dynamicConfigFile=")]
        ok(len(dyn) == 1 and os.path.exists(dyn[0]) and not dyn[0].endswith(FIRST_VERSION),
           f"member {i}'s zoo.cfg names its new dynamic file: {dyn}")
        if dyn and os.path.exists(dyn[0]):
            ok(sorted(members_in(open(dyn[0]).read())) == sorted(current), f"member {i}'s dynamic file names {current}")
        ok(not os.path.exists(f"{work}/m{i}.cfg.dynamic.next"), f"member {i} has no .next file left")
    # zkCli's reconfig and config, as an operator types them.
    out = zkcli(current[0], [f"addauth digest {SUPER[1]}", f"reconfig -add {spec(7, 'observer')}",
                             "config", "reconfig -remove 7", "config"])
    ok("Committed new configuration" in out and spec(7, "observer") in out,
       f"zkCli reconfig -add adds an observer: {out[-600:]!r}")
    last = out.split("Committed new configuration:")[-1]
    ok(out.count("Committed new configuration:") == 2 and spec(7, "observer") not in last
       and out.count(spec(7, "observer")) == 2,
       f"zkCli reconfig -remove takes it out again, and config shows each membership: {out[-900:]!r}")
    out = zkcli(current[0], ["reconfig -remove 7"], errors=True)
    ok("Insufficient permission" in out or "NoAuth" in out, f"zkCli reconfig without super is refused: {out[-300:]!r}")
    # A restarted member comes back with the new membership from its files.
    y = current[-1]
    stop(y)
    start(y, "zabd")
    ok(wait_for(lambda: mode(y) in ("leader", "follower"), 120), f"member {y} restarts on its rewritten files and serves")
    return current


def migrate(admin, forward):
    """ZooKeeper members 1..3 replaced by zabd 4..6 (forward), or zabd 4..6 by ZooKeeper
    members 1..3 again, from empty data directories (rollback). Each member swap is two
    steps: start the new member and add it once it follows; remove the old one and stop it
    once the others serve without it."""
    if forward:
        olds, news, kind = [1, 2, 3], [4, 5, 6], "zabd"
    else:
        olds, news, kind = [4, 5, 6], [1, 2, 3], "zk"
    current = list(olds)
    for old, new in zip(olds, news):
        if not forward:
            import shutil
            shutil.rmtree(f"{work}/m{new}", ignore_errors=True)

        def add_new():
            ok(join(new, kind, current), f"{kind} member {new} syncs as a non-voting follower")
            add(admin, new)

        step(f"start {kind} {new}, wait until it follows, add it", add_new, current + [new])
        current = current + [new]
        rest = [i for i in current if i != old]

        def remove_old():
            remove(admin, old)
            ok(wait_for(lambda: leader_of(rest) is not None, 60), f"a leader among {rest}")
            stop(old)

        step(f"remove {kinds[old]} {old} and stop it", remove_old, rest)
        current = rest
    return current


try:
    first = "zk" if scenario in ("migrate", "mixed") else "zabd"
    initial = [1] if scenario == "grow" else [1, 2, 3]
    for i in initial:
        configure(i, initial)
        start(i, first)
    ok(wait_for(lambda: all(mode(i) in ("leader", "follower") for i in initial), 120),
       f"{len(initial)} {first} member(s) serve, not standalone: {[mode(i) for i in initial]}")
    kz = KazooClient(hosts=connect, timeout=30, connection_retry=KazooRetry(max_tries=-1, max_delay=1),
                     command_retry=KazooRetry(max_tries=-1, max_delay=1, deadline=60))
    kz.add_listener(lambda s: states.append(s))
    kz.start(timeout=60)
    kz.ensure_path("/reconfig")
    kz.create("/reconfig-owner", b"", ephemeral=True)
    session = kz.client_id[0]
    admin = KazooClient(hosts=connect, timeout=30, auth_data=[SUPER],
                        connection_retry=KazooRetry(max_tries=-1, max_delay=1),
                        command_retry=KazooRetry(max_tries=-1, max_delay=1, deadline=60))
    admin.start(timeout=60)
    t = threading.Thread(target=writer, args=(kz,), daemon=True)
    t.start()
    stop_file = f"{work}/curator-stop"
    java = subprocess.Popen(["java", "-cp", f"{classes}:{zkcp}", "FailoverClients", connect, "2", "3600",
                             f"{work}/no-kill", stop_file], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    procs["curator"] = java
    curator_lines = []

    def read_curator():
        for line in java.stdout:
            line = line.rstrip()
            curator_lines.append(line)
            if line.startswith("state "):
                _, i, st, _ = line.split()
                curator_states.append((time.time(), f"client {i} {st}"))

    threading.Thread(target=read_curator, daemon=True).start()
    ok(wait_for(lambda: "ready" in curator_lines, 120), "two Curator clients write")
    if scenario == "zabd":
        current = run_zabd(admin)
    elif scenario == "migrate":
        current = migrate(admin, True)
        ok(all(kinds[i] == "zabd" for i in current), f"the ensemble is all zabd: {current}")
        n = len(acked)
        ok(wait_for(lambda: len(acked) > n + 20, 60), "the all-zabd ensemble serves writes")
        current = migrate(admin, False)
        ok(all(kinds[i] == "zk" for i in current), f"the ensemble is all ZooKeeper again: {current}")
    elif scenario == "grow":
        current = [1]
        for new in (2, 3):
            step(f"start zabd {new}, wait until it follows, add it",
                 lambda: ok(join(new, "zabd", current), f"zabd {new} syncs") and add(admin, new),
                 current + [new])
            current = current + [new]
        ok(sorted(voters_in(config_seen(1))) == [1, 2, 3], "three voters")
        leader = leader_of(current)
        step(f"remove the leader {leader}", lambda: remove(admin, leader), [i for i in current if i != leader])
        current = [i for i in current if i != leader]
        stop(leader)
    else:
        # mixed: a ZooKeeper leader adds a zabd member; then with a zabd leader, a ZooKeeper one.
        current = [1, 2, 3]
        ok(join(4, "zabd", current), "zabd 4 syncs with a ZooKeeper leader")
        step("add zabd 4 (ZooKeeper leader)", lambda: add(admin, 4), [1, 2, 3, 4])
        current = [1, 2, 3, 4]
        leader = leader_of(current)
        step(f"remove ZooKeeper leader {leader}", lambda: remove(admin, leader), [i for i in current if i != leader])
        current = [i for i in current if i != leader]
        stop(leader)
        for _ in range(3):
            if kinds.get(leader_of(current)) == "zabd":
                break
            # Make zabd 4 the leader: remove whichever ZooKeeper member leads.
            l = leader_of(current)
            if l is None or len(current) <= 2:
                break
            step(f"remove ZooKeeper leader {l}", lambda: remove(admin, l), [i for i in current if i != l])
            current = [i for i in current if i != l]
            stop(l)
        ok(kinds.get(leader_of(current)) == "zabd", f"a zabd member leads {current}")
        ok(join(5, "zk", current), "ZooKeeper 5 syncs with a zabd leader")
        step("add ZooKeeper 5 (zabd leader)", lambda: add(admin, 5), current + [5])
        current = current + [5]
        # A ZooKeeper observer of a zabd leader takes the next change by INFORMANDACTIVATE.
        ok(join(6, "zk", current, "observer"), "ZooKeeper 6 observes a zabd leader")
        step("add ZooKeeper 6 as an observer (zabd leader)", lambda: add(admin, 6, "observer"), current + [6])
        current = current + [6]
        rest = [i for i in current if i != 5]
        step("remove ZooKeeper 5; ZooKeeper observer 6 is informed", lambda: remove(admin, 5), rest)
        ok(mode(6) == "observer", f"ZooKeeper 6 still observes: {mode(6)}")
        stop(5)
        current = rest
    n = len(acked)
    ok(wait_for(lambda: len(acked) > n + 20, 60), f"writes go on with {current}")
    stop_writing.set()
    t.join(timeout=120)
    kz.sync("/reconfig")
    have = set(kz.get_children("/reconfig"))
    missing = [n for n in acked if f"w{n:07d}" not in have]
    ok(not missing, f"every acknowledged write is there ({len(acked)} acknowledged, {len(missing)} missing)")
    ok(kz.client_id[0] == session and kz.exists("/reconfig-owner") is not None,
       "the session never expired: its ephemeral is still there")
    ok(KazooState.LOST not in states, f"the client never saw LOST (states: {[str(s) for s in states]})")
    print(f"# {len(acked)} writes acknowledged, {len(errors)} failed and retried by the client", flush=True)
    open(stop_file, "w").close()
    try:
        procs.pop("curator").wait(timeout=120)
    except subprocess.TimeoutExpired:
        pass
    wait_for(lambda: sum(l.startswith("client ") for l in curator_lines) == 2, 30)
    summary = [l for l in curator_lines if l.startswith("client ")]
    ok(len(summary) == 2, f"both Curator clients report: {summary}")
    ok(all(" lost=0 " in l for l in summary), "no Curator client saw LOST")
    for l in summary:
        print(f"# Curator {l}", flush=True)
    kz.stop()
    admin.stop()
finally:
    stop_writing.set()
    for i in list(procs):
        stop(i, signal.SIGKILL)
    if failures:
        for i in range(1, N + 1):
            for kind in ("zk", "zabd"):
                p = f"{work}/m{i}.{kind}.log"
                if os.path.exists(p):
                    print(f"--- m{i}.{kind}.log (last 40 lines)")
                    print("".join(open(p).readlines()[-40:]))
print(f"# work directory {work}")
sys.exit(1 if failures else 0)
