#!/usr/bin/env python3
"""Apache Flink 2.3 high availability on zabd, end to end: a standalone session cluster (two
JobManagers, one TaskManager) with `high-availability.type: zookeeper` pointed at a
3-member zabd ensemble, running a checkpointing, stateful streaming job (StatefulJob.java,
compiled here with javac against flink-dist).

Scenario `kerberos` (the secured-platform setup): the members talk quorum TLS with quorum
SASL (DIGEST-MD5) inside, clients reach them over TLS only (secureClientPort), and Flink
logs in from a keytab (`security.kerberos.login.*`, `zookeeper.sasl.disable: false`) with
`high-availability.zookeeper.client.acl: creator`, against a throwaway KDC. Checks: Flink's
HA znodes (leader latch, connection_info, execution plans with their lock children, the
checkpoint counter and the checkpoints) exist and carry `sasl` ACLs naming Flink's
principal; a client without credentials gets NoAuth on them; SIGKILL of the leading
JobManager: the standby takes over once the session expires and the job runs again from
the latest checkpoint recorded in zabd.

Scenario `failover` (leaderServes=no on a 3-member ensemble), one job through:
(c) SIGKILL of the zabd leader, twice: the job never restarts (numRestarts unchanged) and
the same JobManager stays leader; (d) all three members stopped (SIGTERM) and started
again within the session timeout: Flink's sessions survive (the latch nodes' owners are
the same) and the job runs on from the latest checkpoint recorded in zabd; (b) SIGTERM of
the leading JobManager: the standby takes over within seconds, restoring the latest
checkpoint; (a) SIGKILL of it: the standby takes over once its session expires. Before
that, the HA znodes are checked: leader latch, connection_info, the execution plan with
its lock child, the checkpoint counter and the checkpoints.

Scenario `standalone`: (e) the same job against one standalone zabd, with (a) on it.

Each failover prints a timing line (kill → new leader in the coordination service → job
RUNNING → first new checkpoint, and whether the job restarted). FLINK_HA_SERVER=zookeeper
runs the same against Apache ZooKeeper 3.8 (by hand, for docs/flink.md); then the checks
that only zabd can pass are reported, not counted.

Everything started is stopped by PID; every wait has a deadline; logs are printed on
failure.

Usage: flink_ha.py ZABD_BINARY FLINK_HOME SCENARIO. One line per check, then a count.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import harness as h  # noqa: E402
from checks import check, results  # noqa: E402

ZABD_ONLY = h.SERVER == "zabd"


def timing(label, t0, coord, running, ckpt, restarted):
    """One line of the side-by-side table."""
    ms = lambda t: f"{(t - t0) * 1000:.0f} ms" if t else "-"  # noqa: E731
    print(f"timing {h.SERVER} {label}: new leader in the coordination service (a write "
          f"through it succeeds; for a JobManager kill: the standby's address in the leader "
          f"node) {ms(coord)}, "
          f"job RUNNING {ms(running)}, first new checkpoint {ms(ckpt)}, job restarted: "
          f"{'yes' if restarted else 'no'}", flush=True)


def promise(name, fn):
    """A check zabd must pass; against ZooKeeper its outcome is only reported."""
    if ZABD_ONLY:
        check(name, fn)
        return
    try:
        fn()
        print(f"zookeeper also: {name}", flush=True)
    except Exception as e:
        print(f"zookeeper does not: {name} ({e})", flush=True)


class Cluster:
    """Members, two JobManagers, a TaskManager, the job, and a kazoo client."""

    def __init__(self):
        for i in h.members():
            h.start_member(i)
        check(f"the coordination service serves ({h.SERVER}, {len(h.members())} member(s))",
              lambda: h.wait("the ensemble", h.ensemble_serves))
        self.jar = h.build_job()
        for i in (1, 2):
            h.start_jm(i)
        h.start_tm()
        self.admin = h.zk()
        self.leader = None
        self.job = None

    def leader_jm(self):
        return [i for i, p in h.JM_REST.items() if p == self.leader][0]

    def start_job(self):
        def up():
            self.leader = h.wait("a JobManager leader", lambda: h.leader_rest_port(self.admin))
            h.wait("the TaskManager registered",
                   lambda: h.rest(self.leader, "/overview")["taskmanagers"] >= 1)
            self.job = h.submit(self.jar, self.leader)
            h.wait("the job RUNNING", lambda: h.job_state(self.leader, self.job) == "RUNNING")
            h.wait("3 completed checkpoints",
                   lambda: h.checkpoints(self.leader, self.job)["counts"]["completed"] >= 3)
        check("two JobManagers elect a leader; the stateful job runs and checkpoints", up)

    def znodes(self):
        """Flink's HA nodes as the notes describe them; returns them."""
        ns, job, c = h.NS, self.job, self.admin
        latch = f"{ns}/leader/latch"
        nodes = [latch] + [f"{latch}/{n}" for n in c.get_children(latch)]
        assert len(nodes) >= 3, f"a latch node per JobManager: {nodes}"
        nodes += [f"{ns}/leader/rest_server/connection_info",
                  f"{ns}/leader/dispatcher/connection_info",
                  f"{ns}/leader/resource_manager/connection_info",
                  f"{ns}/execution-plans/{job}", f"{ns}/jobs/{job}/checkpoint_id_counter"]
        locks = c.get_children(f"{ns}/execution-plans/{job}/locks")
        assert locks, "the execution plan has a lock child"
        nodes.append(f"{ns}/execution-plans/{job}/locks/{locks[0]}")
        ids = h.checkpoint_ids(c, job)
        assert ids, "checkpoints are recorded"
        nodes.append(f"{ns}/jobs/{job}/checkpoints/{ids[-1]:019d}")
        for n in nodes:
            assert c.exists(n), n
        lock = c.exists(f"{ns}/execution-plans/{job}/locks/{locks[0]}")
        assert lock.ephemeralOwner != 0, "the lock child is ephemeral"
        counter, _ = c.get(f"{ns}/jobs/{job}/checkpoint_id_counter")
        assert len(counter) == 4 and int.from_bytes(counter, "big") > ids[-1], \
            f"the counter (4-byte int) is past the latest checkpoint: {counter!r} {ids[-1]}"
        return nodes

    def latest(self):
        return h.checkpoint_ids(self.admin, self.job)[-1]

    def jm_takeover(self, sig, label):
        """Stops the leading JobManager with `sig`; the standby takes over, restoring the
        latest checkpoint recorded; the stopped one comes back as standby."""
        old, old_jm, job = self.leader, self.leader_jm(), self.job
        t0 = h.time.time()
        h.kill(f"jm{old_jm}", sig)
        recorded = self.latest()
        coord = running = ckpt = None
        new = h.wait("the standby's address in the leader node",
                     lambda: (lambda p: p if p and p != old else None)(h.leader_rest_port(self.admin)))
        coord = h.time.time()
        h.wait("the job RUNNING on the new leader", lambda: h.job_state(new, job) == "RUNNING")
        running = h.time.time()
        restored = h.wait("the job restored from a checkpoint",
                          lambda: h.checkpoints(new, job)["latest"]["restored"])
        assert restored["id"] == recorded, \
            f"restored checkpoint {restored['id']}, latest recorded {recorded}"
        h.wait("a new checkpoint", lambda: self.latest() > recorded)
        ckpt = h.time.time()
        timing(label, t0, coord, running, ckpt, True)
        self.leader = new
        h.start_jm(old_jm)

    def member_kills(self, rounds):
        """(c) SIGKILL of the coordination service's leader, `rounds` times, each member
        started again before the next. Timing: kill → a write through the service
        succeeds → the first new checkpoint; a restart shows in the job's marks once two
        checkpoints have completed after the kill."""
        job, jm = self.job, self.leader
        first = h.run_marks(jm, job)
        h.service_writes(self.admin)
        for r in range(rounds):
            leader = h.wait("a serving ensemble", h.member_leader)
            before = h.run_marks(h.leader_rest_port(self.admin), job)
            recorded = self.latest()
            t0 = h.time.time()
            h.kill(f"zabd{leader}")
            h.wait("a write through the service", lambda: h.service_writes(self.admin))
            coord = h.time.time()
            h.wait("a new checkpoint", lambda: self.latest() > recorded)
            ckpt = h.time.time()
            h.wait("another checkpoint", lambda: self.latest() > recorded + 1)
            restarted = h.run_marks(h.leader_rest_port(self.admin), job) != before
            timing(f"(c) member leader kill {r + 1}", t0, coord, None, ckpt, restarted)
            h.start_member(leader)
            h.wait("the member back", h.ensemble_serves)
            # leaderServes=no's promise holds once the new leader has handed its clients'
            # member's leadership over (it kept them through the failover).
            h.wait("a leader without clients", h.leader_without_clients)
        assert h.leader_rest_port(self.admin) == jm, "the same JobManager leads"
        after = h.run_marks(jm, job)
        assert after == first, f"(restarts, start time, restored checkpoint) {first} -> {after}"
        assert h.job_state(jm, job) == "RUNNING"

    def all_members_restart(self):
        """(d) Every member stopped and started again within the session timeout."""
        owners = h.latch_owners(self.admin)
        jm, job = self.leader, self.job
        before = h.run_marks(jm, job)
        recorded = self.latest()
        t0 = h.time.time()
        for i in h.members():
            h.kill(f"zabd{i}", h.signal.SIGTERM)
        for i in h.members():
            h.start_member(i)
        h.wait("a write through the service", lambda: h.service_writes(self.admin))
        coord = h.time.time()
        h.wait("a new checkpoint", lambda: self.latest() > recorded)
        ckpt = h.time.time()
        self.leader = h.wait("a JobManager leader", lambda: h.leader_rest_port(self.admin))
        h.wait("the job RUNNING", lambda: h.job_state(self.leader, job) == "RUNNING")
        running = h.time.time()
        restarted = self.leader != jm or h.run_marks(self.leader, job) != before
        timing("(d) all members restarted", t0, coord, running, ckpt, restarted)
        assert h.latch_owners(self.admin) == owners, \
            f"latch owners {owners} -> {h.latch_owners(self.admin)}: a session was lost"
        if restarted:
            restored = h.checkpoints(self.leader, job)["latest"]["restored"]
            assert restored and restored["id"] >= recorded, f"restored {restored}, recorded {recorded}"


def failover():
    c = Cluster()
    c.start_job()
    check("Flink's HA znodes: latch, connection_info, execution plan and its lock, checkpoint "
          "counter, checkpoints", c.znodes)
    promise("(c) SIGKILL of the leader member, twice, with leaderServes=no: the job never "
            "restarts and the same JobManager leads", lambda: c.member_kills(2))
    promise("(d) all members stopped and started within the session timeout: Flink's "
            "sessions survive and the job runs on", c.all_members_restart)
    check("(b) SIGTERM of the leading JobManager: the standby takes over, restoring the "
          "latest checkpoint", lambda: c.jm_takeover(h.signal.SIGTERM, "(b) JobManager SIGTERM"))
    check("(a) SIGKILL of the leading JobManager: the standby takes over once the session "
          "expires, restoring the latest checkpoint",
          lambda: c.jm_takeover(h.signal.SIGKILL, "(a) JobManager SIGKILL"))


def standalone():
    c = Cluster()
    c.start_job()
    check("(e) on a standalone server: Flink's HA znodes are all there", c.znodes)
    check("(e) on a standalone server: SIGKILL of the leading JobManager, the standby takes "
          "over", lambda: c.jm_takeover(h.signal.SIGKILL, "(e) standalone, JobManager SIGKILL"))


def kerberos():
    h.certs.make(h.WORK, [("server", "/O=Test/CN=localhost")])
    kdc = h.krb.start_kdc(h.WORK, [("zookeeper/localhost", "zk.keytab"), ("flink", "flink.keytab")])
    h.procs["kdc"] = kdc
    with open(h.path("zabd.jaas"), "w") as f:
        f.write(f"""Server {{
    com.sun.security.auth.module.Krb5LoginModule required
    useKeyTab=true
    keyTab="{h.path('zk.keytab')}"
    storeKey=true
    principal="zookeeper/localhost@{h.krb.REALM}";
}};
QuorumServer {{
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_member="memberpw";
}};
QuorumLearner {{
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="member"
    password="memberpw";
}};
""")
    for i in (1, 2, 3):
        h.start_member(i)
    check("a 3-member zabd ensemble forms with quorum TLS and quorum SASL",
          lambda: h.wait("the ensemble", h.ensemble_serves))
    jar = h.build_job()
    for i in (1, 2):
        h.start_jm(i)
    h.start_tm()
    admin = h.zk()
    state = {}

    def cluster_up():
        leader = h.wait("a JobManager leader in zabd", lambda: h.leader_rest_port(admin))
        assert leader in h.JM_REST.values(), leader
        h.wait("the TaskManager registered",
             lambda: h.rest(leader, "/overview")["taskmanagers"] >= 1)
        state["leader"] = leader
    check("two Kerberized JobManagers elect a leader through zabd over TLS", cluster_up)

    def job_runs():
        job = h.submit(jar, state["leader"])
        state["job"] = job
        h.wait("the job RUNNING", lambda: h.job_state(state["leader"], job) == "RUNNING")
        h.wait("3 completed checkpoints",
             lambda: h.checkpoints(state["leader"], job)["counts"]["completed"] >= 3)
    check("the stateful job runs and checkpoints, its metadata in zabd", job_runs)

    def znodes_carry_sasl_acls():
        job = state["job"]
        latch = f"{h.NS}/leader/latch"
        nodes = [latch] + [f"{latch}/{c}" for c in admin.get_children(latch)]
        assert len(nodes) >= 3, f"a latch node per JobManager: {nodes}"
        nodes += [f"{h.NS}/leader/rest_server/connection_info",
                  f"{h.NS}/leader/dispatcher/connection_info",
                  f"{h.NS}/execution-plans/{job}",
                  f"{h.NS}/jobs/{job}/checkpoint_id_counter"]
        plan_locks = admin.get_children(f"{h.NS}/execution-plans/{job}/locks")
        assert plan_locks, "the execution plan has a lock child"
        nodes.append(f"{h.NS}/execution-plans/{job}/locks/{plan_locks[0]}")
        ids = h.checkpoint_ids(admin, job)
        assert ids, "checkpoints are recorded in zabd"
        nodes.append(f"{h.NS}/jobs/{job}/checkpoints/{ids[-1]:019d}")
        for n in nodes:
            acls, _ = admin.get_acls(n)
            found = [(a.id.scheme, a.id.id, a.perms) for a in acls]
            assert found == [("sasl", h.FLINK_PRINCIPAL, 31)], f"{n}: {found}"
        state["checked"] = len(nodes)
    check("Flink's HA znodes (latch, connection_info, execution plan and lock, checkpoint counter, "
          "checkpoints) carry sasl ACLs for its principal", znodes_carry_sasl_acls)

    def stranger_gets_no_auth():
        from kazoo.exceptions import NoAuthError
        c = h.zk(auth=False)
        try:
            for n in (f"{h.NS}/leader/rest_server/connection_info", f"{h.NS}/execution-plans"):
                try:
                    c.get(n)
                    raise AssertionError(f"read {n} without credentials")
                except NoAuthError:
                    pass
            try:
                c.get_children(f"{h.NS}/jobs/{state['job']}/checkpoints")
                raise AssertionError("listed the checkpoints without credentials")
            except NoAuthError:
                pass
        finally:
            c.stop()
            c.close()
    check("a client without credentials gets NoAuth on Flink's nodes", stranger_gets_no_auth)

    def failover():
        job, old = state["job"], state["leader"]
        old_jm = [i for i, p in h.JM_REST.items() if p == old][0]
        h.kill(f"jm{old_jm}")
        recorded = h.checkpoint_ids(admin, job)[-1]
        new = h.wait("the standby's address in the leader node",
                   lambda: (lambda p: p if p and p != old else None)(h.leader_rest_port(admin)))
        h.wait("the job RUNNING on the new leader", lambda: h.job_state(new, job) == "RUNNING")
        restored = h.wait("the job restored from a checkpoint",
                        lambda: h.checkpoints(new, job)["latest"]["restored"])
        assert restored["id"] == recorded, \
            f"restored checkpoint {restored['id']}, latest recorded in zabd {recorded}"
        h.wait("a new checkpoint after the takeover",
             lambda: max(h.checkpoint_ids(admin, job)) > recorded)
        state["leader"] = new
    check("SIGKILL of the leading JobManager: the standby takes over, restoring the latest "
          "checkpoint recorded in zabd", failover)
    admin.stop()
    admin.close()


def main():
    h.configure(sys.argv[1], sys.argv[2], sys.argv[3])
    try:
        {"kerberos": kerberos, "failover": failover, "standalone": standalone}[h.SCENARIO]()
    except Exception:
        import traceback
        results["failed"] += 1
        traceback.print_exc()
    finally:
        h.stop_all()
    if results["failed"]:
        h.dump_logs()
    else:
        h.shutil.rmtree(h.WORK, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    sys.exit(1 if results["failed"] else 0)


main()
