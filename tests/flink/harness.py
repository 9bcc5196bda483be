"""The Flink HA tests' harness (tests/flink/flink_ha.py runs the scenarios): processes
started and stopped by PID, a zabd ensemble (or one member, or Apache ZooKeeper 3.8 beside
it), kazoo clients reading Flink's znodes, Flink's configuration, JobManagers and
TaskManager, its REST API, and the job (StatefulJob.java) built with javac.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "interop"))
import certs  # noqa: E402
import krb  # noqa: E402
import ports  # noqa: E402
from ports import free_ports  # noqa: E402

DEADLINE = 180.0
FLINK_PRINCIPAL = f"flink@{krb.REALM}"
SUPER_PW = "superpw"
procs = {}
ZABD = FLINK = SCENARIO = WORK = CLUSTER = NS = None
# Which coordination service runs: zabd, or Apache ZooKeeper 3.8 from Debian for the
# side-by-side figures (FLINK_HA_SERVER=zookeeper; not in CI).
SERVER = os.environ.get("FLINK_HA_SERVER", "zabd")
ZK_JARS = "/usr/share/java"


def configure(zabd, flink, scenario):
    """Sets the binary, the Flink distribution and the scenario; makes the work folder."""
    global ZABD, FLINK, SCENARIO, WORK, CLUSTER, NS
    ZABD, FLINK, SCENARIO = os.path.abspath(zabd), os.path.abspath(flink), scenario
    WORK = tempfile.mkdtemp(prefix=f"zabd-flink-{scenario}-{SERVER}-")
    CLUSTER = "/ha-" + scenario
    NS = "/flink" + CLUSTER


def path(*names):
    return os.path.join(WORK, *names)


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
        time.sleep(0.1)
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


def members():
    return (1,) if SCENARIO == "standalone" else (1, 2, 3)


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
    if SCENARIO == "failover":
        lines.append("leaderServes=no")
    if SCENARIO != "kerberos":
        lines = [x for x in lines if not x.startswith("secureClientPort")]
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
    for j in (members() if len(members()) > 1 else ()):
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
    if SERVER == "zookeeper":
        jars = ["zookeeper", "zookeeper-jute", "slf4j-api", "maven3-slf4j-provider", "maven-shared-utils",
                "jansi", "netty-handler", "netty-transport", "netty-common", "netty-buffer", "netty-codec",
                "netty-resolver", "netty-transport-native-unix-common", "commons-cli", "jetty9-server",
                "jetty9-servlet", "jetty9-http", "jetty9-util", "jetty9-io", "jetty9-security",
                "servlet-api", "jackson-core", "jackson-databind", "jackson-annotations", "snappy-java",
                "metrics-core"]
        cp = ":".join(f"{ZK_JARS}/{j}.jar" for j in jars)
        cmd = ["java", "-Xmx512m", "-cp", cp, "org.apache.zookeeper.server.quorum.QuorumPeerMain",
               member_cfg(i)]
    else:
        cmd = [ZABD, "--config", member_cfg(i)]
    spawn(f"zabd{i}", cmd, env)


def mode(i):
    return ports.mode(plain_port(i))


def ensemble_serves():
    """Every running member serves: one leader and followers (or the standalone one)."""
    return member_leader() is not None


def member_leader():
    """The member that leads, when every running member serves (the standalone one counts
    as leader). A ZooKeeper leader with leaderServes=no answers no four-letter word: there
    the one member that is not following leads, once the others follow."""
    modes = {i: mode(i) for i in members() if f"zabd{i}" in procs}
    if SCENARIO == "standalone":
        return 1 if list(modes.values()) == ["standalone"] else None
    silent_leader = SERVER == "zookeeper" and SCENARIO == "failover"
    leaders = [i for i, m in modes.items() if m == "leader" or (silent_leader and m is None)]
    followers = [i for i, m in modes.items() if m == "follower"]
    ok = len(leaders) == 1 and len(followers) == len(modes) - 1
    return leaders[0] if ok else None


def leader_without_clients():
    """zabd with leaderServes=no: the leader holds no client connection (it hands its
    leadership to a member without clients once one is up to date, after a failover made
    a member with clients leader). True when that does not apply."""
    if SERVER != "zabd" or SCENARIO != "failover":
        return True
    leader = member_leader()
    if leader is None:
        return False
    for line in ports.word(plain_port(leader), "mntr").splitlines():
        if line.startswith("zk_num_alive_connections"):
            return int(line.split()[1]) == 0
    return False


# ---------------------------------------------------------------- ZooKeeper clients (kazoo)

def zk(auth=True):
    """A kazoo client over TLS; as the digest super user when `auth`."""
    from kazoo.client import KazooClient
    hosts = ",".join(f"127.0.0.1:{tls_port(i)}" for i in (1, 2, 3))
    kw = dict(use_ssl=True, verify_certs=True, ca=path("ca.pem")) if SCENARIO == "kerberos" \
        else {}
    if SCENARIO != "kerberos":
        hosts = ",".join(f"127.0.0.1:{plain_port(i)}" for i in members())
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


PROBE = "/zabd-flink-probe"


def service_writes(c):
    """Whether a write through the coordination service succeeds now (one second at most)."""
    if not c.exists(PROBE):
        c.ensure_path(PROBE)
    c.set_async(PROBE, b"x").get(timeout=1.0)
    return True


def latch_owners(c):
    """The sessions holding Flink's leader latch nodes."""
    latch = f"{NS}/leader/latch"
    return sorted(c.get(f"{latch}/{n}")[1].ephemeralOwner for n in c.get_children(latch))


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
                      for i in members())
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


def num_restarts(port, job):
    got = rest(port, f"/jobs/{job}/metrics?get=numRestarts")
    return int(float(got[0]["value"])) if got else None


def run_marks(port, job):
    """What changes when the job restarts in any way: its restarts in this JobMaster, when
    its execution started (a JobMaster that lost and regained leadership starts it anew),
    and the checkpoint it last restored from."""
    restored = checkpoints(port, job)["latest"]["restored"]
    return (num_restarts(port, job), rest(port, f"/jobs/{job}")["start-time"],
            restored and (restored["id"], restored["restore_timestamp"]))


def dump_logs():
    for root, _, files in os.walk(WORK):
        for f in sorted(files):
            if f.endswith((".out", ".log")) and ("log-" in root or f.startswith(("zabd", "jm", "tm"))):
                p = os.path.join(root, f)
                with open(p, errors="replace") as fh:
                    tail = fh.read()[-6000:]
                print(f"---- {p} (tail)\n{tail}", flush=True)


