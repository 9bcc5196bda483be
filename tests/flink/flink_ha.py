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

Everything started is stopped by PID; every wait has a deadline; logs are printed on
failure.

Usage: flink_ha.py ZABD_BINARY FLINK_HOME SCENARIO. One line per check, then a count.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
import certs  # noqa: E402
import krb  # noqa: E402
from checks import check, results  # noqa: E402

ZABD, FLINK, SCENARIO = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
WORK = tempfile.mkdtemp(prefix=f"zabd-flink-{SCENARIO}-")
DEADLINE = 180.0
CLUSTER = "/ha-" + SCENARIO
NS = "/flink" + CLUSTER
FLINK_PRINCIPAL = f"flink@{krb.REALM}"
SUPER_PW = "superpw"
procs = {}


def path(*names):
    return os.path.join(WORK, *names)


def free_ports(n):
    ss = [socket.socket() for _ in range(n)]
    for s in ss:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in ss]
    for s in ss:
        s.close()
    return ports


def wait(what, cond, deadline=DEADLINE):
    """Waits until cond() returns something true, and returns it."""
    end = time.time() + deadline
    last = None
    while time.time() < end:
        try:
            last = cond()
            if last:
                return last
        except Exception as e:  # a service still starting
            last = e
        time.sleep(0.5)
    raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what} (last: {last!r})")


# ---------------------------------------------------------------- processes

def spawn(name, cmd, env):
    log = open(path(f"{name}.out"), "a")
    procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=WORK, start_new_session=True)


def kill(name, sig=signal.SIGKILL):
    p = procs.pop(name, None)
    if p and p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_all():
    for name in list(procs):
        kill(name)


# ---------------------------------------------------------------- zabd

P = free_ports(12)  # per member: quorum, election, plain client, TLS client


def plain_port(i):
    return P[(i - 1) * 4 + 2]


def tls_port(i):
    return P[(i - 1) * 4 + 3]


def super_digest():
    import base64
    import hashlib
    return "super:" + base64.b64encode(hashlib.sha1(f"super:{SUPER_PW}".encode()).digest()).decode()


def member_cfg(i):
    d = path(f"m{i}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "myid"), "w") as f:
        f.write(f"{i}\n")
    lines = ["tickTime=1000", "initLimit=10", "syncLimit=5", f"dataDir={d}",
             f"clientPort={plain_port(i)}", "clientPortAddress=127.0.0.1",
             f"secureClientPort={tls_port(i)}", "secureClientPortAddress=127.0.0.1",
             "4lw.commands.whitelist=*", "admin.enableServer=false",
             f"DigestAuthenticationProvider.superDigest={super_digest()}"]
    if SCENARIO == "kerberos":
        lines += [f"java.security.auth.login.config={path('zabd.jaas')}",
                  "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
                  "quorum.auth.enableSasl=true", "quorum.auth.learnerRequireSasl=true",
                  "quorum.auth.serverRequireSasl=true",
                  f"ssl.keyStore.location={path('server.p12')}", f"ssl.keyStore.password={certs.PASSWORD}",
                  f"ssl.trustStore.location={path('truststore.p12')}",
                  f"ssl.trustStore.password={certs.PASSWORD}", "ssl.clientAuth=want",
                  "sslQuorum=true", f"ssl.quorum.keyStore.location={path('server.p12')}",
                  f"ssl.quorum.keyStore.password={certs.PASSWORD}",
                  f"ssl.quorum.trustStore.location={path('truststore.p12')}",
                  f"ssl.quorum.trustStore.password={certs.PASSWORD}"]
    for j in (1, 2, 3):
        # No client address in the server lines: /zookeeper/config then lists none, and
        # Curator's ensemble tracker keeps Flink on the TLS ports it was given.
        lines.append(f"server.{j}=127.0.0.1:{P[(j - 1) * 4]}:{P[(j - 1) * 4 + 1]}")
    cfg = path(f"m{i}.cfg")
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    return cfg


def start_member(i):
    env = krb.env(WORK) if SCENARIO == "kerberos" else dict(os.environ)
    env["ZABD_LOG"] = "info"
    spawn(f"zabd{i}", [ZABD, "--config", member_cfg(i)], env)


def mode(i):
    try:
        s = socket.create_connection(("127.0.0.1", plain_port(i)), timeout=2)
        s.sendall(b"srvr")
        out = b""
        while True:
            b = s.recv(4096)
            if not b:
                break
            out += b
        for line in out.decode().splitlines():
            if line.startswith("Mode: "):
                return line[6:]
    except OSError:
        return None
    return None


def ensemble_serves():
    modes = [mode(i) for i in (1, 2, 3) if f"zabd{i}" in procs]
    return modes.count("leader") == 1 and all(m in ("leader", "follower") for m in modes)


# ---------------------------------------------------------------- ZooKeeper clients (kazoo)

def zk(auth=True):
    """A kazoo client over TLS; as the digest super user when `auth`."""
    from kazoo.client import KazooClient
    hosts = ",".join(f"127.0.0.1:{tls_port(i)}" for i in (1, 2, 3))
    kw = dict(use_ssl=True, verify_certs=True, ca=path("ca.pem")) if SCENARIO == "kerberos" \
        else {}
    if SCENARIO != "kerberos":
        hosts = ",".join(f"127.0.0.1:{plain_port(i)}" for i in (1, 2, 3))
    c = KazooClient(hosts=hosts, timeout=15,
                    auth_data=[("digest", f"super:{SUPER_PW}")] if auth else None, **kw)
    c.start(timeout=30)
    return c


def leader_rest_port(c):
    """The REST port of the JobManager whose address is in Flink's leader node."""
    data, _ = c.get(f"{NS}/leader/rest_server/connection_info")
    m = re.search(rb"http://127\.0\.0\.1:(\d+)", data or b"")
    return int(m.group(1)) if m else None


def checkpoint_ids(c, job):
    return sorted(int(n) for n in c.get_children(f"{NS}/jobs/{job}/checkpoints"))


# ---------------------------------------------------------------- Flink

FP = free_ports(4)  # per JobManager: RPC, REST
JM_RPC = {1: FP[0], 2: FP[2]}
JM_REST = {1: FP[1], 2: FP[3]}


def java17_opts():
    """The --add-opens/--add-exports Flink's shipped config.yaml gives Java 17."""
    with open(os.path.join(FLINK, "conf", "config.yaml")) as f:
        m = re.search(r"^\s+all: (--add-.*)$", f.read(), re.M)
    return [m.group(1)] if m else []


def flink_yaml(rpc_port, rest_port, ha=True):
    quorum = ",".join(f"127.0.0.1:{tls_port(i) if SCENARIO == 'kerberos' else plain_port(i)}"
                      for i in (1, 2, 3))
    java_opts = java17_opts()
    lines = [
        "jobmanager.rpc.address: 127.0.0.1", f"jobmanager.rpc.port: {rpc_port}",
        "jobmanager.bind-host: 127.0.0.1", "rest.address: 127.0.0.1", f"rest.port: {rest_port}",
        "rest.bind-address: 127.0.0.1", "taskmanager.host: 127.0.0.1",
        "taskmanager.bind-host: 127.0.0.1", "taskmanager.numberOfTaskSlots: 2",
        "jobmanager.memory.process.size: 1024m", "taskmanager.memory.process.size: 1280m",
        "parallelism.default: 1",
        f"execution.checkpointing.dir: file://{path('checkpoints')}",
        f"state.checkpoints.dir: file://{path('checkpoints')}",
        "restart-strategy.type: fixed-delay", "restart-strategy.fixed-delay.attempts: 1000",
        "restart-strategy.fixed-delay.delay: 1 s",
    ]
    if ha:
        lines += [
            "high-availability.type: zookeeper",
            f"high-availability.zookeeper.quorum: {quorum}",
            "high-availability.zookeeper.path.root: /flink",
            f"high-availability.cluster-id: {CLUSTER}",
            f"high-availability.storageDir: file://{path('ha')}",
            "high-availability.zookeeper.client.session-timeout: 10000",
        ]
    if ha and SCENARIO == "kerberos":
        lines += [
            "high-availability.zookeeper.client.acl: creator",
            "security.kerberos.login.use-ticket-cache: false",
            f"security.kerberos.login.keytab: {path('flink.keytab')}",
            f"security.kerberos.login.principal: {FLINK_PRINCIPAL}",
            "security.kerberos.login.contexts: Client",
            "zookeeper.sasl.disable: false",
            "zookeeper.sasl.service-name: zookeeper",
            "zookeeper.sasl.login-context-name: Client",
        ]
        java_opts += [
            f"-Djava.security.krb5.conf={path('krb5.conf')}",
            f"-Dzookeeper.server.principal=zookeeper/localhost@{krb.REALM}",
            "-Dzookeeper.client.secure=true",
            "-Dzookeeper.clientCnxnSocket="
            "org.apache.flink.shaded.zookeeper3.org.apache.zookeeper.ClientCnxnSocketNetty",
            f"-Dzookeeper.ssl.trustStore.location={path('truststore.p12')}",
            f"-Dzookeeper.ssl.trustStore.password={certs.PASSWORD}",
        ]
    if java_opts:
        lines.append(f"env.java.opts.all: \"{' '.join(java_opts)}\"")
    return "\n".join(lines) + "\n"


def conf_dir(name, yaml):
    d = path(f"conf-{name}")
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(os.path.join(FLINK, "conf")):
        if f.startswith("log4j") or f.startswith("logback"):
            shutil.copy(os.path.join(FLINK, "conf", f), d)
    with open(os.path.join(d, "config.yaml"), "w") as f:
        f.write(yaml)
    return d


def flink_env(name, conf):
    env = dict(os.environ)
    env.update(FLINK_CONF_DIR=conf, FLINK_LOG_DIR=path(f"log-{name}"),
               FLINK_PID_DIR=path(f"pid-{name}"), FLINK_HOME=FLINK)
    os.makedirs(env["FLINK_LOG_DIR"], exist_ok=True)
    return env


def start_jm(i):
    conf = conf_dir(f"jm{i}", flink_yaml(JM_RPC[i], JM_REST[i]))
    spawn(f"jm{i}", [os.path.join(FLINK, "bin", "jobmanager.sh"), "start-foreground"],
          flink_env(f"jm{i}", conf))


def start_tm():
    conf = conf_dir("tm", flink_yaml(0, 0))
    spawn("tm", [os.path.join(FLINK, "bin", "taskmanager.sh"), "start-foreground"],
          flink_env("tm", conf))


def rest(port, url):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{url}", timeout=10) as r:
        return json.loads(r.read())


def build_job():
    classes = path("job-classes")
    os.makedirs(classes, exist_ok=True)
    dist = [os.path.join(FLINK, "lib", f) for f in os.listdir(os.path.join(FLINK, "lib"))
            if f.startswith("flink-dist")][0]
    subprocess.run(["javac", "-cp", dist, "-d", classes, os.path.join(HERE, "StatefulJob.java")],
                   check=True, capture_output=True, timeout=300)
    jar = path("job.jar")
    subprocess.run(["jar", "cfe", jar, "StatefulJob", "-C", classes, "."], check=True,
                   capture_output=True, timeout=120)
    return jar


def submit(jar, rest_port):
    """Submits the job through the CLI to the JobManager at `rest_port`; returns its id."""
    conf = conf_dir(f"cli-{rest_port}", flink_yaml(0, rest_port, ha=False))
    r = subprocess.run([os.path.join(FLINK, "bin", "flink"), "run", "-d", jar, "zabd-ha-job"],
                       env=flink_env("cli", conf), capture_output=True, text=True, timeout=300)
    m = re.search(r"JobID ([0-9a-f]{32})", r.stdout + r.stderr)
    if not m:
        raise AssertionError(f"submission failed: {r.stdout}\n{r.stderr}")
    return m.group(1)


def job_state(port, job):
    return rest(port, f"/jobs/{job}")["state"]


def checkpoints(port, job):
    return rest(port, f"/jobs/{job}/checkpoints")


# ---------------------------------------------------------------- the scenario

def kerberos():
    certs.make(WORK, [("server", "/O=Test/CN=localhost")])
    kdc = krb.start_kdc(WORK, [("zookeeper/localhost", "zk.keytab"), ("flink", "flink.keytab")])
    procs["kdc"] = kdc
    with open(path("zabd.jaas"), "w") as f:
        f.write(f"""Server {{
    com.sun.security.auth.module.Krb5LoginModule required
    useKeyTab=true
    keyTab="{path('zk.keytab')}"
    storeKey=true
    principal="zookeeper/localhost@{krb.REALM}";
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
        start_member(i)
    check("a 3-member zabd ensemble forms with quorum TLS and quorum SASL",
          lambda: wait("the ensemble", ensemble_serves))
    jar = build_job()
    for i in (1, 2):
        start_jm(i)
    start_tm()
    admin = zk()
    state = {}

    def cluster_up():
        leader = wait("a JobManager leader in zabd", lambda: leader_rest_port(admin))
        assert leader in JM_REST.values(), leader
        wait("the TaskManager registered",
             lambda: rest(leader, "/overview")["taskmanagers"] >= 1)
        state["leader"] = leader
    check("two Kerberized JobManagers elect a leader through zabd over TLS", cluster_up)

    def job_runs():
        job = submit(jar, state["leader"])
        state["job"] = job
        wait("the job RUNNING", lambda: job_state(state["leader"], job) == "RUNNING")
        wait("3 completed checkpoints",
             lambda: checkpoints(state["leader"], job)["counts"]["completed"] >= 3)
    check("the stateful job runs and checkpoints, its metadata in zabd", job_runs)

    def znodes_carry_sasl_acls():
        job = state["job"]
        latch = f"{NS}/leader/latch"
        nodes = [latch] + [f"{latch}/{c}" for c in admin.get_children(latch)]
        assert len(nodes) >= 3, f"a latch node per JobManager: {nodes}"
        nodes += [f"{NS}/leader/rest_server/connection_info",
                  f"{NS}/leader/dispatcher/connection_info",
                  f"{NS}/execution-plans/{job}",
                  f"{NS}/jobs/{job}/checkpoint_id_counter"]
        plan_locks = admin.get_children(f"{NS}/execution-plans/{job}/locks")
        assert plan_locks, "the execution plan has a lock child"
        nodes.append(f"{NS}/execution-plans/{job}/locks/{plan_locks[0]}")
        ids = checkpoint_ids(admin, job)
        assert ids, "checkpoints are recorded in zabd"
        nodes.append(f"{NS}/jobs/{job}/checkpoints/{ids[-1]:019d}")
        for n in nodes:
            acls, _ = admin.get_acls(n)
            found = [(a.id.scheme, a.id.id, a.perms) for a in acls]
            assert found == [("sasl", FLINK_PRINCIPAL, 31)], f"{n}: {found}"
        state["checked"] = len(nodes)
    check("Flink's HA znodes (latch, connection_info, execution plan and lock, checkpoint counter, "
          "checkpoints) carry sasl ACLs for its principal", znodes_carry_sasl_acls)

    def stranger_gets_no_auth():
        from kazoo.exceptions import NoAuthError
        c = zk(auth=False)
        try:
            for n in (f"{NS}/leader/rest_server/connection_info", f"{NS}/execution-plans"):
                try:
                    c.get(n)
                    raise AssertionError(f"read {n} without credentials")
                except NoAuthError:
                    pass
            try:
                c.get_children(f"{NS}/jobs/{state['job']}/checkpoints")
                raise AssertionError("listed the checkpoints without credentials")
            except NoAuthError:
                pass
        finally:
            c.stop()
            c.close()
    check("a client without credentials gets NoAuth on Flink's nodes", stranger_gets_no_auth)

    def failover():
        job, old = state["job"], state["leader"]
        old_jm = [i for i, p in JM_REST.items() if p == old][0]
        kill(f"jm{old_jm}")
        recorded = checkpoint_ids(admin, job)[-1]
        new = wait("the standby's address in the leader node",
                   lambda: (lambda p: p if p and p != old else None)(leader_rest_port(admin)))
        wait("the job RUNNING on the new leader", lambda: job_state(new, job) == "RUNNING")
        restored = wait("the job restored from a checkpoint",
                        lambda: checkpoints(new, job)["latest"]["restored"])
        assert restored["id"] == recorded, \
            f"restored checkpoint {restored['id']}, latest recorded in zabd {recorded}"
        wait("a new checkpoint after the takeover",
             lambda: max(checkpoint_ids(admin, job)) > recorded)
        state["leader"] = new
    check("SIGKILL of the leading JobManager: the standby takes over, restoring the latest "
          "checkpoint recorded in zabd", failover)
    admin.stop()
    admin.close()


def dump_logs():
    for root, _, files in os.walk(WORK):
        for f in sorted(files):
            if f.endswith((".out", ".log")) and ("log-" in root or f.startswith(("zabd", "jm", "tm"))):
                p = os.path.join(root, f)
                with open(p, errors="replace") as fh:
                    tail = fh.read()[-6000:]
                print(f"---- {p} (tail)\n{tail}", flush=True)


def main():
    try:
        {"kerberos": kerberos}[SCENARIO]()
    except Exception:
        import traceback
        results["failed"] += 1
        traceback.print_exc()
    finally:
        stop_all()
    if results["failed"]:
        dump_logs()
    else:
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    sys.exit(1 if results["failed"] else 0)


main()
