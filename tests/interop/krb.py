"""A throwaway Kerberos realm for the interop suites: Debian's krb5-kdc on a free loopback
port, its database, principals and keytabs in a work directory. The caller stops the KDC
process (by its PID) when done.
"""
import os
import socket
import subprocess
import time

REALM = "ZABD.TEST"


def env(work):
    """The environment that points MIT Kerberos programs at the realm."""
    e = dict(os.environ)
    e["KRB5_CONFIG"] = os.path.join(work, "krb5.conf")
    e["KRB5_KDC_PROFILE"] = os.path.join(work, "kdc.conf")
    e["KRB5CCNAME"] = "FILE:" + os.path.join(work, "ccache")
    return e


def _run(args, e, work):
    r = subprocess.run(args, cwd=work, env=e, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {r.stdout}{r.stderr}")


def start_kdc(work, principals):
    """Creates the realm with `principals` [(name, keytab file)] and starts the KDC; returns
    its Popen."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = lambda name: os.path.join(work, name)  # noqa: E731
    with open(p("krb5.conf"), "w") as f:
        f.write(f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    udp_preference_limit = 1
[realms]
    {REALM} = {{
        kdc = 127.0.0.1:{port}
    }}
""")
    with open(p("kdc.conf"), "w") as f:
        f.write(f"""[kdcdefaults]
    kdc_ports = {port}
    kdc_tcp_ports = {port}
[realms]
    {REALM} = {{
        database_name = {p('principal')}
        key_stash_file = {p('stash')}
        acl_file = {p('kadm5.acl')}
        max_life = 1d
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
    }}
""")
    open(p("kadm5.acl"), "w").close()
    e = env(work)
    _run(["kdb5_util", "create", "-s", "-r", REALM, "-P", "masterpw"], e, work)
    for princ, keytab in principals:
        _run(["kadmin.local", "-r", REALM, "-q", f"addprinc -randkey {princ}"], e, work)
        _run(["kadmin.local", "-r", REALM, "-q", f"ktadd -k {p(keytab)} {princ}"], e, work)
    kdc = subprocess.Popen(["krb5kdc", "-n", "-r", REALM], env=e, cwd=work,
                           stdout=open(p("kdc.out"), "w"), stderr=subprocess.STDOUT)
    end = time.time() + 60
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return kdc
        except OSError:
            time.sleep(0.1)
    kdc.kill()
    raise RuntimeError("the KDC did not start")
