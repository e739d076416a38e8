"""Certificates made with the openssl CLI: a CA, a server certificate for the loopback names
(plus --san values and the bind address), and a client certificate whose CN is the user and O
the group (system:masters, so the certificate kubeconfig has full access like the admin token)."""

import ipaddress
import os
import subprocess

CLIENT_USER = "fake-client-admin"
CLIENT_GROUP = "system:masters"


class CertError(Exception):
    pass


def _run(args, cwd):
    try:
        proc = subprocess.run(["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)
    except FileNotFoundError:
        raise CertError("openssl not found (Debian package openssl)")
    if proc.returncode != 0:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        raise CertError("openssl %s failed: %s" % (args[0], last))


def _san_entry(value):
    try:
        ipaddress.ip_address(value)
        return "IP:" + value
    except ValueError:
        return "DNS:" + value


def generate(directory, sans):
    """Writes ca.crt/ca.key, server.crt/server.key, client.crt/client.key into directory."""
    names = ["127.0.0.1", "::1", "localhost"]
    for s in sans:
        if s and s not in names and s not in ("0.0.0.0", "::"):
            names.append(s)
    cnf = os.path.join(directory, "openssl.cnf")
    with open(cnf, "w") as f:
        f.write("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
                "[ca]\nbasicConstraints = critical,CA:TRUE\n"
                "keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n"
                "subjectKeyIdentifier = hash\n"
                "[server]\nbasicConstraints = critical,CA:FALSE\n"
                "keyUsage = critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage = serverAuth\nsubjectAltName = %s\n"
                "authorityKeyIdentifier = keyid\n"
                "[client]\nbasicConstraints = critical,CA:FALSE\n"
                "keyUsage = critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage = clientAuth\nauthorityKeyIdentifier = keyid\n"
                % ",".join(_san_entry(n) for n in names))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(["req", "-x509", "-config", cnf, "-extensions", "ca", *ec, "-keyout", "ca.key",
          "-out", "ca.crt", "-days", "3650", "-subj", "/CN=fake-apiserver-ca"], directory)
    for name, subj, ext in (("server", "/CN=fake-apiserver", "server"),
                            ("client", "/O=%s/CN=%s" % (CLIENT_GROUP, CLIENT_USER), "client")):
        _run(["req", "-new", "-config", cnf, *ec, "-keyout", name + ".key", "-out",
              name + ".csr", "-subj", subj], directory)
        _run(["x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
              "-CAcreateserial", "-out", name + ".crt", "-days", "365", "-extfile", cnf,
              "-extensions", ext], directory)
        os.remove(os.path.join(directory, name + ".csr"))
    for leftover in ("ca.srl", "openssl.cnf"):
        try:
            os.remove(os.path.join(directory, leftover))
        except FileNotFoundError:
            pass
    for key in ("ca.key", "server.key", "client.key"):
        os.chmod(os.path.join(directory, key), 0o600)
