#!/usr/bin/env python3
"""Interop suite for zabd's security: TLS, the x509 scheme, SASL DIGEST-MD5 and SASL
GSSAPI (Kerberos), through Apache ZooKeeper's own Java client (zkCli, ZooKeeperMain, from
Debian's jar) and kazoo (PyPI, with pure-sasl and pykerberos), against a throwaway
Kerberos realm served by Debian's krb5-kdc on loopback (started here, stopped by PID).

Usage: security_suite.py ZABD_BINARY CLASSPATH. The binary must be built with the
`kerberos` feature. Prints one line per check and 'N passed, M failed'; exits non-zero on
any failure.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import certs  # noqa: E402
import krb  # noqa: E402
from checks import check, results  # noqa: E402

ZABD, CP = sys.argv[1], sys.argv[2]
WORK = tempfile.mkdtemp(prefix="zabd-security-")
PW = certs.PASSWORD
REALM = krb.REALM
DEADLINE = 60.0
procs = []


def run(*args, env=None, cwd=WORK, timeout=120):
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({r.returncode}): {r.stdout}\n{r.stderr}")
    return r.stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def path(name):
    return os.path.join(WORK, name)


# ---------------------------------------------------------------- certificates

def make_certs():
    certs.make(WORK, [("server", "/O=Test/CN=localhost"), ("alice", "/O=Test/OU=zabd/CN=alice"),
                      ("bob", "/O=Test/OU=zabd/CN=bob")])


# ---------------------------------------------------------------- Kerberos realm

def krb_env():
    return krb.env(WORK)


def start_kdc():
    procs.append(krb.start_kdc(WORK, [("zookeeper/localhost", "zk.keytab"), ("zkcli", "zkcli.keytab"),
                                      ("flink", "flink.keytab")]))


# ---------------------------------------------------------------- zabd

def start_zabd(name, lines, env=None):
    """Starts zabd on a zoo.cfg of `lines`; returns the announced client address."""
    d = path(name)
    os.makedirs(d)
    cfg = os.path.join(d, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write("\n".join([f"dataDir={d}/data", "tickTime=2000", "admin.enableServer=false",
                           "4lw.commands.whitelist=*"] + lines) + "\n")
    out = open(os.path.join(d, "out"), "w")
    p = subprocess.Popen([ZABD, "--config", cfg], stdout=out, stderr=open(os.path.join(d, "log"), "w"),
                         env=env)
    procs.append(p)
    end = time.time() + DEADLINE
    while time.time() < end:
        with open(os.path.join(d, "out")) as f:
            for line in f:
                if line.startswith("zabd: serving clients on "):
                    return line.split()[-1]
        if p.poll() is not None:
            raise RuntimeError(f"zabd {name} exited: " + open(os.path.join(d, "log")).read())
        time.sleep(0.1)
    raise RuntimeError(f"zabd {name} did not start")


def zkcli(addr, *cmd, props=(), expect_ok=True):
    """One zkCli command (Apache ZooKeeper's ZooKeeperMain); its stdout and stderr."""
    args = ["java", "-cp", CP, "-Dzookeeper.jmx.log4j.disable=true"] + list(props) + [
        "org.apache.zookeeper.ZooKeeperMain", "-server", addr] + list(cmd)
    r = subprocess.run(args, capture_output=True, text=True, timeout=120, env=krb_env())
    out = r.stdout + r.stderr
    if expect_ok and r.returncode != 0:
        raise AssertionError(f"zkCli {cmd} exited {r.returncode}: {out}")
    return out


def tls_props(who):
    return [
        "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
        "-Dzookeeper.client.secure=true",
        f"-Dzookeeper.ssl.keyStore.location={path(who + '.p12')}",
        f"-Dzookeeper.ssl.keyStore.password={PW}",
        f"-Dzookeeper.ssl.trustStore.location={path('truststore.p12')}",
        f"-Dzookeeper.ssl.trustStore.password={PW}",
    ]


def jaas_file(name, text):
    with open(path(name), "w") as f:
        f.write(text)
    return path(name)


# ---------------------------------------------------------------- suites

def tls_suite():
    port = free_port()
    addr = start_zabd("tls", [
        "clientPort=0", "clientPortAddress=127.0.0.1",
        f"secureClientPort={port}", "secureClientPortAddress=127.0.0.1",
        "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
        "authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider",
        f"ssl.keyStore.location={path('server.p12')}", f"ssl.keyStore.password={PW}",
        f"ssl.trustStore.location={path('truststore.p12')}", f"ssl.trustStore.password={PW}",
    ])
    secure = f"127.0.0.1:{port}"
    alice = "CN=alice,OU=zabd,O=Test"

    def java_client_over_tls():
        # zkCli splits an ACL list at commas, so an x509 id (an RFC 2253 name) is given as
        # `auth`, which the server expands to the connection's x509 identity.
        out = zkcli(secure, "create", "/tls", "hello", "auth::cdrwa", props=tls_props("alice"))
        assert "Created /tls" in out, out
        out = zkcli(secure, "getAcl", "/tls", props=tls_props("alice"))
        # zkCli prints the commas of the id as %2C.
        assert "'x509,'" + alice.replace(",", "%2C") in out, out
        out = zkcli(secure, "get", "/tls", props=tls_props("alice"))
        assert "hello" in out, out
    check("zkCli (Netty, client.secure) creates and reads an x509-protected node", java_client_over_tls)

    def another_certificate_is_refused():
        out = zkcli(secure, "get", "/tls", props=tls_props("bob"), expect_ok=False)
        assert "Insufficient permission" in out or "NoAuth" in out, out
    check("zkCli with bob's certificate gets NoAuth on alice's node", another_certificate_is_refused)

    def kazoo_over_tls():
        from kazoo.client import KazooClient
        from kazoo.exceptions import NoAuthError
        zk = KazooClient(hosts=secure, use_ssl=True, verify_certs=True, ca=path("ca.pem"),
                         certfile=path("alice.pem"), keyfile=path("alice.key"), timeout=30)
        zk.start(timeout=30)
        try:
            data, _ = zk.get("/tls")
            assert data == b"hello", data
            zk.create("/tls/kazoo", b"k")
        finally:
            zk.stop()
        zk = KazooClient(hosts=secure, use_ssl=True, verify_certs=True, ca=path("ca.pem"),
                         certfile=path("bob.pem"), keyfile=path("bob.key"), timeout=30)
        zk.start(timeout=30)
        try:
            try:
                zk.get("/tls")
                raise AssertionError("bob read alice's node")
            except NoAuthError:
                pass
        finally:
            zk.stop()
    check("kazoo (use_ssl) with client certificates: x509 identities", kazoo_over_tls)

    def plain_port_is_plain():
        out = zkcli(addr, "get", "/tls", expect_ok=False)
        assert "Insufficient permission" in out or "NoAuth" in out, out
    check("the plain port serves plain clients (without an x509 identity)", plain_port_is_plain)


DIGEST_SERVER = """Server {
    org.apache.zookeeper.server.auth.DigestLoginModule required
    user_super="adminsecret"
    user_bob="bobsecret"
    user_alice="alicesecret";
};
"""


def digest_client(user, pw):
    return jaas_file(f"client-{user}.jaas", f"""Client {{
    org.apache.zookeeper.server.auth.DigestLoginModule required
    username="{user}"
    password="{pw}";
}};
""")


def digest_suite():
    server_jaas = jaas_file("server-digest.jaas", DIGEST_SERVER)
    addr = start_zabd("digest", [
        "clientPort=0", "clientPortAddress=127.0.0.1",
        "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        f"java.security.auth.login.config={server_jaas}",
        "zookeeper.superUser=super",
    ])

    def as_user(user, pw):
        return [f"-Djava.security.auth.login.config={digest_client(user, pw)}"]

    def java_digest():
        out = zkcli(addr, "create", "/dig", "d", "sasl:bob:cdrwa", props=as_user("bob", "bobsecret"))
        assert "Created /dig" in out, out
        out = zkcli(addr, "get", "/dig", props=as_user("bob", "bobsecret"))
        assert "\nd\n" in out or out.strip().endswith("d") or "\nd" in out, out
        out = zkcli(addr, "whoami", props=as_user("bob", "bobsecret"))
        assert "sasl" in out and "bob" in out, out
    check("zkCli with a JAAS Client section (DIGEST-MD5) authenticates as sasl:bob", java_digest)

    def java_other_user():
        out = zkcli(addr, "get", "/dig", props=as_user("alice", "alicesecret"), expect_ok=False)
        assert "Insufficient permission" in out or "NoAuth" in out, out
        out = zkcli(addr, "get", "/dig", props=as_user("super", "adminsecret"))
        assert "Insufficient permission" not in out, out
    check("zkCli as alice gets NoAuth; as the SASL super user reads it", java_other_user)

    def java_wrong_password():
        out = zkcli(addr, "get", "/dig", props=as_user("bob", "nope"), expect_ok=False)
        # What Apache ZooKeeper 3.8 makes zkCli print here.
        assert "state:AuthFailed" in out and "KeeperErrorCode = AuthFailed" in out, out
    check("zkCli with a wrong password is told authentication failed", java_wrong_password)

    def kazoo_digest():
        from kazoo.client import KazooClient
        from kazoo.exceptions import NoAuthError
        zk = KazooClient(hosts=addr, timeout=30, sasl_options={
            "mechanism": "DIGEST-MD5", "username": "bob", "password": "bobsecret"})
        zk.start(timeout=30)
        try:
            assert zk.get("/dig")[0] == b"d"
        finally:
            zk.stop()
        zk = KazooClient(hosts=addr, timeout=30, sasl_options={
            "mechanism": "DIGEST-MD5", "username": "alice", "password": "alicesecret"})
        zk.start(timeout=30)
        try:
            try:
                zk.get("/dig")
                raise AssertionError("alice read bob's node")
            except NoAuthError:
                pass
        finally:
            zk.stop()
    check("kazoo (sasl_options DIGEST-MD5) as bob and as alice", kazoo_digest)


def kerberos_suite():
    server_jaas = jaas_file("server-krb.jaas", f"""Server {{
    com.sun.security.auth.module.Krb5LoginModule required
    useKeyTab=true
    keyTab="{path('zk.keytab')}"
    storeKey=true
    useTicketCache=false
    principal="zookeeper/localhost@{REALM}";
}};
""")
    addr = start_zabd("kerberos", [
        "clientPort=0", "clientPortAddress=127.0.0.1",
        "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider",
        f"java.security.auth.login.config={server_jaas}",
    ], env=krb_env())
    client_jaas = jaas_file("client-krb.jaas", f"""Client {{
    com.sun.security.auth.module.Krb5LoginModule required
    useKeyTab=true
    keyTab="{path('zkcli.keytab')}"
    storeKey=true
    useTicketCache=false
    principal="zkcli@{REALM}";
}};
""")
    props = [f"-Djava.security.auth.login.config={client_jaas}",
             f"-Djava.security.krb5.conf={path('krb5.conf')}",
             f"-Dzookeeper.server.principal=zookeeper/localhost@{REALM}"]

    def java_kerberos():
        out = zkcli(addr, "create", "/krb", "k", f"sasl:zkcli@{REALM}:cdrwa", props=props)
        assert "Created /krb" in out, out
        out = zkcli(addr, "whoami", props=props)
        assert f"zkcli@{REALM}" in out, out
        out = zkcli(addr, "get", "/krb", props=props)
        assert "Insufficient permission" not in out, out
    check("zkCli with a Kerberos keytab (GSSAPI) authenticates as sasl:zkcli@ZABD.TEST", java_kerberos)

    def anonymous_refused():
        out = zkcli(addr, "get", "/krb", expect_ok=False)
        assert "Insufficient permission" in out or "NoAuth" in out, out
    check("a client without credentials gets NoAuth on the Kerberos principal's node", anonymous_refused)

    def kazoo_kerberos():
        from kazoo.client import KazooClient
        env = krb_env()
        run("kinit", "-kt", path("flink.keytab"), f"flink@{REALM}", env=env)
        old = {k: os.environ.get(k) for k in ("KRB5_CONFIG", "KRB5CCNAME")}
        os.environ.update({"KRB5_CONFIG": env["KRB5_CONFIG"], "KRB5CCNAME": env["KRB5CCNAME"]})
        try:
            zk = KazooClient(hosts=addr.replace("127.0.0.1", "localhost"), timeout=30,
                             sasl_options={"mechanism": "GSSAPI", "service": "zookeeper"})
            zk.start(timeout=30)
            try:
                zk.create("/krb-kazoo", b"f", acl=[__import__("kazoo.security").security.make_acl(
                    "sasl", f"flink@{REALM}", all=True)])
                assert zk.get("/krb-kazoo")[0] == b"f"
            finally:
                zk.stop()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    check("kazoo (sasl_options GSSAPI, pykerberos) authenticates as sasl:flink@ZABD.TEST", kazoo_kerberos)


def main():
    try:
        make_certs()
        start_kdc()
        tls_suite()
        digest_suite()
        kerberos_suite()
    except Exception:
        results["failed"] += 1
        traceback.print_exc()
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
    print(f"{results['passed']} passed, {results['failed']} failed", flush=True)
    sys.exit(1 if results["failed"] else 0)


main()
