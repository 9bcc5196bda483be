#!/usr/bin/env python3
"""Leader kill -9 under Curator clients that write: does any client notice?

A 3-member ensemble (zabd, or Apache ZooKeeper 3.8 from Debian with `zookeeper`), nine
Curator 5.4 clients (FailoverClients.java, each with its own session and a
ConnectionStateListener) writing their own node in a loop, spread over the members by
their ZooKeeper client's choice. After a few seconds of writes the leader is killed with
SIGKILL. Per client: its member (from `cons`), SUSPENDED/LOST events, and the write pause
(from its last reply before the kill to its first after).

Modes:
- `zabd`: members keep client connections across the change of leader: no client on a
  surviving member may see SUSPENDED or LOST (checked);
- `zabd-leaderserves-no`: with leaderServes=no the leader has no clients: no client at
  all may see SUSPENDED or LOST (checked);
- `zookeeper`: the same run against Apache ZooKeeper 3.8, recorded (not checked: there
  every client on a follower is expected to see SUSPENDED).

Usage: failover_suite.py ZABD_BINARY CLASSPATH CLASSES_DIR MODE [ROUNDS]. Prints one
summary line per round (`round <r> <mode>: ...`), checks, then a count.
"""
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ports  # noqa: E402
from checks import check, results  # noqa: E402

ZABD, CP, CLASSES, MODE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
ROUNDS = int(sys.argv[5]) if len(sys.argv) > 5 else 1
WORK = tempfile.mkdtemp(prefix=f"zabd-failover-{MODE}-")
DEADLINE = 120.0
CLIENTS = 9
procs = {}


class Ensemble:
    def __init__(self, rnd):
        self.p = ports.free_ports(9)
        self.dir = os.path.join(WORK, f"round{rnd}")
        os.makedirs(self.dir)

    def client_port(self, i):
        return self.p[(i - 1) * 3 + 2]

    def cfg(self, i):
        d = os.path.join(self.dir, f"m{i}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "myid"), "w") as f:
            f.write(f"{i}\n")
        lines = ["tickTime=1000", "initLimit=10", "syncLimit=5", f"dataDir={d}",
                 f"clientPort={self.client_port(i)}", "clientPortAddress=127.0.0.1",
                 "4lw.commands.whitelist=*", "admin.enableServer=false"]
        if MODE == "zabd-leaderserves-no":
            lines.append("leaderServes=no")
        for j in (1, 2, 3):
            lines.append(f"server.{j}=127.0.0.1:{self.p[(j - 1) * 3]}:{self.p[(j - 1) * 3 + 1]}")
        path = os.path.join(self.dir, f"m{i}.cfg")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def start(self, i):
        log = open(os.path.join(self.dir, f"m{i}.log"), "a")
        if MODE == "zookeeper":
            cp = CP.replace("slf4j-nop.jar", "maven3-slf4j-provider.jar") + \
                ":/usr/share/java/maven-shared-utils.jar:/usr/share/java/jansi.jar"
            cmd = ["java", "-Xmx512m", "-cp", cp, "org.apache.zookeeper.server.quorum.QuorumPeerMain",
                   self.cfg(i)]
        else:
            cmd = [ZABD, "--config", self.cfg(i)]
        procs[f"m{i}"] = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)

    def mode(self, i):
        return ports.mode(self.client_port(i))

    def leader(self):
        end = time.time() + DEADLINE
        while time.time() < end:
            modes = {i: self.mode(i) for i in (1, 2, 3)}
            leaders = [i for i, m in modes.items() if m == "leader"]
            if len(leaders) == 1 and sum(m == "follower" for m in modes.values()) == 2:
                return leaders[0]
            time.sleep(0.2)
        raise AssertionError(f"no ensemble: {[self.mode(i) for i in (1, 2, 3)]}")

    def sessions_by_member(self):
        """session id (hex, no 0x) -> member, from `cons`."""
        out = {}
        for i in (1, 2, 3):
            for line in ports.word(self.client_port(i), "cons").splitlines():
                k = line.find("sid=0x")
                if k >= 0:
                    sid = line[k + 6:].split(",")[0].split(")")[0]
                    out[sid.lstrip("0") or "0"] = i
        return out


def kill(name, sig=signal.SIGKILL):
    p = procs.pop(name, None)
    if p and p.poll() is None:
        p.send_signal(sig)
        p.wait()


def one_round(rnd):
    e = Ensemble(rnd)
    for i in (1, 2, 3):
        e.start(i)
    leader = e.leader()
    connect = ",".join(f"127.0.0.1:{e.client_port(i)}" for i in (1, 2, 3))
    kill_file = os.path.join(e.dir, "kill-at")
    java = subprocess.Popen(["java", "-cp", f"{CLASSES}:{CP}", "FailoverClients", connect, str(CLIENTS),
                             "14", kill_file], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    procs["java"] = java
    lines, sessions = [], {}
    end = time.time() + DEADLINE
    while time.time() < end:
        line = java.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip())
        if line.startswith("session "):
            _, i, sid = line.split()
            sessions[int(i)] = sid[2:].lstrip("0")
        if line.startswith("ready"):
            break
    assert len(sessions) == CLIENTS, "\n".join(lines)
    where = e.sessions_by_member()
    on = {i: where.get(sid) for i, sid in sessions.items()}
    time.sleep(4)  # writes flowing before the kill (a load period, not a wait for a condition)
    kill(f"m{leader}")
    with open(kill_file, "w") as f:
        f.write(str(int(time.time() * 1000)))
    rest, _ = java.communicate(timeout=DEADLINE)
    procs.pop("java", None)
    lines += rest.splitlines()
    stats = {}
    for line in lines:
        if line.startswith("client "):
            parts = line.split()
            kv = dict(p.split("=", 1) for p in parts[2:])
            stats[int(parts[1])] = kv
    assert len(stats) == CLIENTS, "\n".join(lines[-40:])
    for name in list(procs):
        kill(name)
    rows = []
    for i in range(CLIENTS):
        s = stats[i]
        rows.append({"client": i, "member": on[i], "on_leader": on[i] == leader,
                     "suspended": int(s["suspended"]), "lost": int(s["lost"]),
                     "pause": int(s["pause_ms"]), "writes": int(s["writes"]), "failed": int(s["failed"])})
    survivors = [r for r in rows if not r["on_leader"]]
    pauses = [r["pause"] for r in rows if r["pause"] >= 0]
    print(f"round {rnd} {MODE}: leader {leader}; clients on the leader "
          f"{sum(r['on_leader'] for r in rows)}; SUSPENDED on survivors "
          f"{sum(r['suspended'] for r in survivors)}, on all {sum(r['suspended'] for r in rows)}; "
          f"LOST {sum(r['lost'] for r in rows)}; write pause p50 {statistics.median(pauses):.0f} ms, "
          f"max {max(pauses)} ms; writes {sum(r['writes'] for r in rows)}, failed "
          f"{sum(r['failed'] for r in rows)}", flush=True)
    for r in rows:
        print(f"  client {r['client']} on member {r['member']}{' (leader)' if r['on_leader'] else ''}: "
              f"suspended {r['suspended']} lost {r['lost']} pause {r['pause']} ms", flush=True)
    return rows


def main():
    try:
        for rnd in range(1, ROUNDS + 1):
            rows = one_round(rnd)
            if MODE == "zabd":
                def survivors_unaware():
                    noticed = [r for r in rows if not r["on_leader"] and (r["suspended"] or r["lost"])]
                    assert not noticed, noticed
                check(f"round {rnd}: no client on a surviving member sees SUSPENDED or LOST",
                      survivors_unaware)
            elif MODE == "zabd-leaderserves-no":
                def nobody():
                    assert not any(r["on_leader"] for r in rows), f"a client on the leader: {rows}"
                    assert not any(r["suspended"] or r["lost"] for r in rows), rows
                check(f"round {rnd}: leaderServes=no: no client at all sees SUSPENDED or LOST", nobody)
    except Exception:
        import traceback
        results["failed"] += 1
        traceback.print_exc()
    finally:
        for name in list(procs):
            kill(name)
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    sys.exit(1 if results["failed"] else 0)


main()
