#!/usr/bin/env python3
"""A fake Kubernetes API server for infertap's tests (README.md beside this file).

  python3 test/fake_apiserver/fake_apiserver.py --dir DIR [--port 0] [--bind 127.0.0.1]
      [--state FILE.json] [--san NAME]... [--disable G/V]... [--history N]
      [--watch-timeout S] [--bookmark-interval S] [--verbose]

Writes ca.crt, server.crt/.key, client.crt/.key, admin.token, kubeconfig, kubeconfig-cert,
control and, last, ready (https://HOST:PORT) into DIR, then serves until SIGTERM/SIGINT.
Python 3 standard library only; certificates come from the openssl CLI.
"""

import argparse
import base64
import json
import os
import signal
import ssl
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakeapi import certs  # noqa: E402
from fakeapi.server import ADMIN_USER, FakeApiServer  # noqa: E402
from fakeapi.status import ApiError  # noqa: E402


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write("fake_apiserver: %s (see --help)\n" % message)
        sys.exit(2)


def parse_args(argv):
    p = OneLineParser(description="Fake Kubernetes API server for tests (see README.md).")
    p.add_argument("--dir", required=True, help="directory for certificates, tokens, "
                   "kubeconfigs and the ready file (created if missing)")
    p.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on: loopback (default) "
                   "or an address of this host such as a test veth's; never the wildcard")
    p.add_argument("--state", help="JSON file with initial objects (list, kind List, or "
                   "{objects, tokens})")
    p.add_argument("--san", action="append", default=[], help="extra server certificate name "
                   "(IP or DNS), repeatable")
    p.add_argument("--disable", action="append", default=[], metavar="G/V",
                   help="group/version not served at start (a missing CRD), repeatable")
    p.add_argument("--history", type=int, default=10000, help="watch history cap in events")
    p.add_argument("--watch-timeout", type=float, default=1800.0, help="server-side watch "
                   "timeout when the client sends no timeoutSeconds (jittered to [T, 2T))")
    p.add_argument("--bookmark-interval", type=float, default=5.0,
                   help="seconds between BOOKMARK events on watches that allow them")
    p.add_argument("--keep-certs", action="store_true", help="reuse the CA, certificates and "
                   "admin token already in DIR (a restarted server that clients of the previous "
                   "one still trust)")
    p.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error("--port must be 0..65535")
    if args.history < 1:
        p.error("--history must be at least 1")
    if args.watch_timeout <= 0 or args.bookmark_interval <= 0:
        p.error("--watch-timeout and --bookmark-interval must be positive")
    import ipaddress
    try:
        addr = ipaddress.ip_address(args.bind)
    except ValueError:
        p.error("--bind must be an IP address, got %r" % args.bind)
    if addr.is_unspecified:
        # Never every interface: loopback, or one address of this host (e.g. the root end of
        # a test's veth, so agents in network namespaces reach it); binding to an address the
        # host does not have fails.
        p.error("--bind must be one address (default 127.0.0.1), not the wildcard %s"
                % args.bind)
    return args


def write_file(path, text, mode=0o644):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def b64file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def kubeconfig(server_url, ca_line, user_name, user_lines):
    return ("apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n"
            "    %s: %s\n    server: %s\n  name: fake\n"
            "contexts:\n- context:\n    cluster: fake\n    namespace: default\n"
            "    user: %s\n  name: fake\ncurrent-context: fake\npreferences: {}\n"
            "users:\n- name: %s\n  user:\n%s"
            % (ca_line[0], ca_line[1], server_url, user_name, user_name,
               "".join("    %s: %s\n" % kv for kv in user_lines)))


def write_client_files(directory, url, token):
    def path(name):
        return os.path.join(directory, name)

    ca_data = ("certificate-authority-data", b64file(path("ca.crt")))
    ca_file = ("certificate-authority", path("ca.crt"))
    write_file(path("admin.token"), token + "\n", 0o600)
    write_file(path("kubeconfig"), kubeconfig(url, ca_data, ADMIN_USER, [("token", token)]),
               0o600)
    write_file(path("kubeconfig-cert"), kubeconfig(url, ca_data, certs.CLIENT_USER, [
        ("client-certificate-data", b64file(path("client.crt"))),
        ("client-key-data", b64file(path("client.key")))]), 0o600)
    # The same credentials referenced by path, as kubeconfigs written by hand often are.
    write_file(path("kubeconfig-files"), kubeconfig(url, ca_file, certs.CLIENT_USER, [
        ("client-certificate", path("client.crt")), ("client-key", path("client.key"))]),
        0o600)
    write_file(path("kubeconfig-tokenfile"), kubeconfig(url, ca_file, ADMIN_USER, [
        ("tokenFile", path("admin.token"))]), 0o600)


def main(argv):
    args = parse_args(argv)
    d = os.path.abspath(args.dir)
    try:
        os.makedirs(d, exist_ok=True)
        for stale in ("ready", "control"):
            if os.path.exists(os.path.join(d, stale)):
                os.remove(os.path.join(d, stale))
        kept = args.keep_certs and all(os.path.exists(os.path.join(d, f)) for f in (
            "ca.crt", "ca.key", "server.crt", "server.key", "client.crt", "client.key"))
        if not kept:
            certs.generate(d, args.san + [args.bind])
    except (OSError, certs.CertError) as e:
        sys.stderr.write("fake_apiserver: %s\n" % e)
        return 1
    state = None
    if args.state:
        try:
            with open(args.state) as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            sys.stderr.write("fake_apiserver: cannot read --state %s: %s\n" % (args.state, e))
            return 2

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
    ctx.load_verify_locations(os.path.join(d, "ca.crt"))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate authenticates; a token may too
    ctx.set_alpn_protocols(["http/1.1"])
    with open(os.path.join(d, "ca.crt")) as f:
        ca_pem = f.read()

    unknown = [gv for gv in args.disable
               if gv not in ("v1", "inference.networking.k8s.io/v1",
                             "inference.networking.x-k8s.io/v1alpha2", "authentication.k8s.io/v1",
                             "authorization.k8s.io/v1", "rbac.authorization.k8s.io/v1")]
    if unknown:
        sys.stderr.write("fake_apiserver: --disable: unknown group/version %s\n" % unknown[0])
        return 2

    server = None

    def on_admin_token(token):
        write_client_files(d, server.url(), token)

    server = FakeApiServer(args.bind, args.port, ctx, ca_pem, history_cap=args.history,
                           watch_timeout=args.watch_timeout,
                           bookmark_interval=args.bookmark_interval, disabled=args.disable,
                           verbose=args.verbose, on_admin_token=on_admin_token)
    token_file = os.path.join(d, "admin.token")
    if kept and os.path.exists(token_file):
        with open(token_file) as f:
            old_token = f.read().strip()
        if old_token:
            server.use_admin_token(old_token)
    if state is not None:
        try:
            server.load_state(state)
        except ApiError as e:
            sys.stderr.write("fake_apiserver: --state %s: %s\n" % (args.state, e.message))
            return 2
    try:
        server.open()
    except OSError as e:
        sys.stderr.write("fake_apiserver: cannot listen on %s:%d: %s\n"
                         % (args.bind, args.port, e.strerror or e))
        return 1

    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    write_client_files(d, server.url(), server.admin_token)
    write_file(os.path.join(d, "control"), server.control_url() + "\n")
    write_file(os.path.join(d, "ready"), server.url() + "\n")
    print("fake_apiserver: serving %s (control %s)" % (server.url(), server.control_url()),
          flush=True)
    while not done.wait(1.0):
        pass
    try:
        os.remove(os.path.join(d, "ready"))  # a poller must not mistake a dead server for one
    except OSError:
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
