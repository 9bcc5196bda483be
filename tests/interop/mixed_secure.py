#!/usr/bin/env python3
"""A mixed ensemble with quorum SASL: zabd voters 1 and 2 and an Apache ZooKeeper 3.8
voter 3, authenticating to each other with DIGEST-MD5 (quorum.auth.enableSasl,
learnerRequireSasl, serverRequireSasl, JAAS QuorumServer/QuorumLearner sections), and
clients authenticating with SASL too. Checks: the ensemble forms with ZooKeeper and with
zabd leading; writes made through one implementation are read through the other with
their sasl ACLs; a zabd member with a wrong quorum password is kept out (and says so), and
joins once its password is right.

With a third argument `tls` the members talk over quorum TLS as well (sslQuorum with
ssl.quorum.* PKCS12 stores made by openssl and keytool, hostname verification on, no port
unification), DIGEST-MD5 running inside it; the intruder is then a zabd member whose
certificate another CA signed.

With a third argument `kerberos` the members authenticate with Kerberos instead (GSSAPI,
Krb5LoginModule sections with keytabs, quorum.auth.kerberos.servicePrincipal=zkquorum/_HOST)
against a throwaway realm (tests/interop/krb.py); the intruder is then a member whose
principal names a host that is not in the ensemble. The zabd binary must be built with the
`kerberos` feature for that.

Usage: mixed_secure.py ZABD_BINARY CLASSPATH [kerberos|tls]. One line per check, then a count.
"""
import os
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import certs  # noqa: E402
import krb  # noqa: E402
from ports import free_ports  # noqa: E402
import ports  # noqa: E402
from checks import check, results  # noqa: E402

ZABD, CP = sys.argv[1], sys.argv[2]
KERBEROS = len(sys.argv) > 3 and sys.argv[3] == "kerberos"
TLS = len(sys.argv) > 3 and sys.argv[3] == "tls"
WORK = tempfile.mkdtemp(prefix="zabd-mixed-secure-")
DEADLINE = 120.0
procs = {}


P = free_ports(9)


def client(i):
    return f"127.0.0.1:{P[(i - 1) * 3 + 2]}"


def krb_module(principal, keytab):
    return f"""com.sun.security.auth.module.Krb5LoginModule required
    useKeyTab=true
    keyTab="{os.path.join(WORK, keytab)}"
    storeKey=true
    useTicketCache=false
    principal="{principal}@{krb.REALM}";"""


def jaas(name, learner_pw):
    p = os.path.join(WORK, name)
    if KERBEROS:
        # The intruder's principal names a host outside the ensemble.
        learner = ("zkquorum/127.0.0.1", "zkquorum.keytab") if learner_pw == "memberpw" \
            else ("zkquorum/badhost", "bad.keytab")
        with open(p, "w") as f:
            f.write(f"""QuorumServer {{
    {krb_module("zkquorum/127.0.0.1", "zkquorum.keytab")}
}};
QuorumLearner {{
    {krb_module(*learner)}
}};
Server {{
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_bob="bobsecret";
}};
""")
        return p
    with open(p, "w") as f:
        f.write(f"""QuorumServer {{
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_member="memberpw";
}};
QuorumLearner {{
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="member"
    password="{learner_pw}";
}};
Server {{
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_bob="bobsecret";
}};
""")
    return p


MECH = "GSSAPI" if KERBEROS else ("DIGEST-MD5 inside TLS" if TLS else "DIGEST-MD5")
if TLS:
    # The ensemble's CA and member certificate, and a rogue CA's member certificate.
    ROGUE = os.path.join(WORK, "rogue")
    os.makedirs(ROGUE)
    certs.make(WORK, [("member", "/O=Test/CN=localhost")])
    certs.make(ROGUE, [("member", "/O=Test/CN=localhost")])
KDC = krb.start_kdc(WORK, [("zkquorum/127.0.0.1", "zkquorum.keytab"),
                           ("zkquorum/badhost", "bad.keytab")]) if KERBEROS else None
GOOD = jaas("good.jaas", "memberpw")
BAD = jaas("bad.jaas", "wrong")
CLIENT = os.path.join(WORK, "client.jaas")
with open(CLIENT, "w") as f:
    f.write('Client {\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n'
            '    username="bob"\n    password="bobsecret";\n};\n')


def write_cfg(i, jaas_path, rogue=False):
    d = os.path.join(WORK, f"m{i}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "myid"), "w") as f:
        f.write(f"{i}\n")
    lines = ["tickTime=500", "initLimit=10", "syncLimit=5", f"dataDir={d}",
             f"clientPort={P[(i - 1) * 3 + 2]}", "clientPortAddress=127.0.0.1",
             "4lw.commands.whitelist=*", "admin.enableServer=false",
             "quorum.auth.enableSasl=true", "quorum.auth.learnerRequireSasl=true",
             "quorum.auth.serverRequireSasl=true",
             "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"]
    if KERBEROS:
        lines.append("quorum.auth.kerberos.servicePrincipal=zkquorum/_HOST")
    if TLS:
        store = os.path.join(ROGUE if rogue else WORK, "member.p12")
        lines += ["sslQuorum=true", f"ssl.quorum.keyStore.location={store}",
                  f"ssl.quorum.keyStore.password={certs.PASSWORD}",
                  f"ssl.quorum.trustStore.location={os.path.join(WORK, 'truststore.p12')}",
                  f"ssl.quorum.trustStore.password={certs.PASSWORD}"]
    if i != 3:
        # zabd reads the JAAS path as a key; ZooKeeper as a system property.
        lines.append(f"java.security.auth.login.config={jaas_path}")
    for j in (1, 2, 3):
        lines.append(f"server.{j}=127.0.0.1:{P[(j - 1) * 3]}:{P[(j - 1) * 3 + 1]};{client(j)}")
    cfg = os.path.join(WORK, f"m{i}.cfg")
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    return cfg


def start(i, jaas_path=GOOD, rogue=False):
    cfg = write_cfg(i, jaas_path, rogue)
    log = open(os.path.join(WORK, f"m{i}.log"), "a")
    if i == 3:
        cp = CP.replace("slf4j-nop.jar", "maven3-slf4j-provider.jar") + \
            ":/usr/share/java/maven-shared-utils.jar:/usr/share/java/jansi.jar"
        cmd = ["java", "-Xmx512m", f"-Djava.security.auth.login.config={jaas_path}",
               f"-Djava.security.krb5.conf={os.path.join(WORK, 'krb5.conf')}", "-cp", cp,
               "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg]
    else:
        cmd = [ZABD, "--config", cfg]
    env = krb.env(WORK) if KERBEROS else dict(os.environ)
    env["ZABD_LOG"] = "info"
    procs[i] = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)


def stop(i):
    p = procs.pop(i, None)
    if p and p.poll() is None:
        p.kill()
        p.wait()


def mode(i):
    return ports.mode(P[(i - 1) * 3 + 2])


def wait_roles(leader, followers):
    end = time.time() + DEADLINE
    while time.time() < end:
        if mode(leader) == "leader" and all(mode(f) == "follower" for f in followers):
            return
        time.sleep(0.2)
    raise AssertionError(f"roles: {[(i, mode(i)) for i in (1, 2, 3)]}")


def leader_of(members):
    end = time.time() + DEADLINE
    while time.time() < end:
        ms = {i: mode(i) for i in members}
        leaders = [i for i, m in ms.items() if m == "leader"]
        if len(leaders) == 1 and all(m in ("leader", "follower") for m in ms.values()):
            return leaders[0]
        time.sleep(0.2)
    raise AssertionError(f"no leader among {members}: {[(i, mode(i)) for i in members]}")


def zkcli(i, *cmd, expect_ok=True):
    args = ["java", "-cp", CP, f"-Djava.security.auth.login.config={CLIENT}",
            "org.apache.zookeeper.ZooKeeperMain", "-server", client(i)] + list(cmd)
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    if expect_ok and r.returncode != 0:
        raise AssertionError(f"zkCli on {i} {cmd}: {out}")
    return out


def log(i):
    with open(os.path.join(WORK, f"m{i}.log")) as f:
        return f.read()


def main():
    try:
        for i in (1, 2, 3):
            start(i)

        def forms():
            leader_of([1, 2, 3])
        check(f"zabd 1, zabd 2 and ZooKeeper 3 form an ensemble with quorum SASL ({MECH}) required", forms)

        def replicate():
            out = zkcli(1, "create", "/secure", "s", "sasl:bob:cdrwa")
            assert "Created /secure" in out, out
            out = zkcli(3, "sync", "/secure")
            out = zkcli(3, "get", "/secure")
            assert "Insufficient permission" not in out and "\ns\n" in out, out
            out = zkcli(3, "create", "/secure/zk", "z", "sasl:bob:cdrwa")
            assert "Created /secure/zk" in out, out
            out = zkcli(2, "sync", "/secure/zk")
            out = zkcli(2, "get", "/secure/zk")
            assert "\nz\n" in out, out
        check("writes through zabd are read through ZooKeeper and back, with sasl ACLs", replicate)

        def rotate():
            for _ in range(2):
                leader = leader_of([1, 2, 3])
                stop(leader)
                rest = [i for i in (1, 2, 3) if i != leader]
                leader_of(rest)
                start(leader)
                leader_of([1, 2, 3])
            seen = set()
            for _ in range(3):
                leader = leader_of([1, 2, 3])
                seen.add("zookeeper" if leader == 3 else "zabd")
                if len(seen) == 2:
                    break
                stop(leader)
                leader_of([i for i in (1, 2, 3) if i != leader])
                start(leader)
            leader_of([1, 2, 3])
            assert seen == {"zookeeper", "zabd"}, seen
        check("leadership moves between ZooKeeper and zabd through restarts, authenticated each time", rotate)

        def intruder(bad, watched, sign):
            """Member 2 restarted as `bad` says is kept out (`sign` shows in member `watched`'s
            log), the others go on; restarted with the right credentials it catches up."""
            stop(2)
            bad()
            end = time.time() + DEADLINE
            while time.time() < end and sign not in log(watched):
                time.sleep(0.2)
            assert sign in log(watched), log(watched)[-2000:]
            assert mode(2) not in ("leader", "follower"), mode(2)
            out = zkcli(1, "create", "/while-out", "w", "sasl:bob:cdrwa")
            assert "Created /while-out" in out, out
            stop(2)
            start(2, GOOD)
            leader_of([1, 2, 3])
            out = zkcli(2, "sync", "/while-out")
            out = zkcli(2, "get", "/while-out")
            assert "\nw\n" in out, out
        if TLS:
            check("a zabd member whose certificate another CA signed is kept out, and joins with the right one",
                  lambda: intruder(lambda: start(2, rogue=True), 1, "a connection failed quorum TLS"))
        else:
            check(f"a zabd member with wrong quorum credentials ({MECH}) is kept out, and joins with the right ones",
                  lambda: intruder(lambda: start(2, BAD), 2, "quorum SASL authentication to a member failed"))
    except Exception:
        results["failed"] += 1
        traceback.print_exc()
    finally:
        for i in list(procs):
            stop(i)
        if KDC is not None:
            KDC.kill()
            KDC.wait()
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    sys.exit(1 if results["failed"] else 0)


main()
