"""Throwaway certificates for the interop suites, made with openssl and keytool as an
operator makes them: a CA (`ca.pem`), leaf certificates for 127.0.0.1/localhost usable as
server and client (`<name>.pem`, `<name>.key`, `<name>.p12`), and a PKCS12 trust store
holding the CA (`truststore.p12`). Every store's password is PASSWORD."""
import os
import subprocess

PASSWORD = "changeit"


def _run(work, *args):
    r = subprocess.run(list(args), cwd=work, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({r.returncode}): {r.stdout}\n{r.stderr}")


def make(work, leaves):
    """The CA and one leaf per (name, subject) in `leaves`, in directory `work`."""
    _run(work, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3", "-subj",
         "/O=Test/CN=zabd test CA")
    for name, subject in leaves:
        with open(os.path.join(work, f"{name}.ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _run(work, "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        _run(work, "openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "3", "-extfile", f"{name}.ext")
        _run(work, "openssl", "pkcs12", "-export", "-in", f"{name}.pem", "-inkey", f"{name}.key",
             "-out", f"{name}.p12", "-passout", f"pass:{PASSWORD}", "-name", name)
    _run(work, "keytool", "-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", "-keystore",
         "truststore.p12", "-storetype", "PKCS12", "-storepass", PASSWORD)
