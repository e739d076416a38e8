"""Start the fake API server in a subprocess and talk to it (used by the tests in this folder)."""

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "fake_apiserver.py")


def read_text(path):
    with open(path) as f:
        return f.read()


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None


class FakeServer:
    """One fake API server process with its own directory; stop() ends it."""

    def __init__(self, *args, state=None, directory=None):
        self.dir = directory or tempfile.mkdtemp(prefix="fakeapi-")
        cmd = [sys.executable, SCRIPT, "--dir", self.dir, *args]
        if state is not None:
            path = os.path.join(self.dir, "state.json")
            with open(path, "w") as f:
                json.dump(state, f)
            cmd += ["--state", path]
        self.log = open(os.path.join(self.dir, "server.log"), "a")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        ready = os.path.join(self.dir, "ready")
        deadline = time.time() + 20
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("fake apiserver did not start: " + self.server_log())
            time.sleep(0.05)
        self.url = read_text(ready).strip()
        self.control_url = read_text(os.path.join(self.dir, "control")).strip()
        self.ctx = ssl.create_default_context(cafile=self.path("ca.crt"))

    def path(self, name):
        return os.path.join(self.dir, name)

    @property
    def token(self):
        return read_text(self.path("admin.token")).strip()

    def server_log(self):
        try:
            return read_text(os.path.join(self.dir, "server.log"))
        except OSError:
            return ""

    def stop(self, remove=True):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)

    def connection(self, url=None, timeout=10, ctx=None):
        u = urllib.parse.urlsplit(url or self.url)
        return http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                           context=ctx or self.ctx)

    def request(self, method, path, body=None, token="admin", ctype="application/json",
                headers=None, timeout=10, url=None, ctx=None):
        conn = self.connection(url, timeout, ctx)
        hdrs = dict(headers or {})
        if token == "admin":
            token = self.token
        if token:
            hdrs["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = ctype
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def control(self, method, op, body=None, **params):
        q = urllib.parse.urlencode(params)
        r = self.request(method, "/fake/" + op + ("?" + q if q else ""), body=body,
                         url=self.control_url)
        if r.status != 200:
            raise AssertionError("control %s %s: %d %s" % (method, op, r.status, r.raw))
        return r.json

    def watch(self, path, token="admin", timeout=10):
        return Watch(self, path, token, timeout)


class Watch:
    """An open watch stream; next_event() returns the next decoded line, None at a clean end."""

    def __init__(self, server, path, token, timeout):
        self.conn = server.connection(timeout=timeout)
        hdrs = {"Authorization": "Bearer " + (server.token if token == "admin" else token)}
        self.conn.request("GET", path, headers=hdrs)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status

        self.pending = b""
        self.ended = False

    def _chunk(self):
        """The next chunk's data; b"" at the final chunk; ConnectionError when the stream is cut
        without one (http.client would hide that difference)."""
        fp = self.resp.fp
        size_line = fp.readline(1024)
        if not size_line.endswith(b"\n"):
            raise ConnectionError("watch stream cut without the final chunk")
        size = int(size_line.split(b";")[0].strip(), 16)
        if size == 0:
            fp.readline(1024)
            return b""
        data = fp.read(size)
        if len(data) < size or fp.readline(8) != b"\r\n":
            raise ConnectionError("watch stream cut inside a chunk")
        return data

    def next_event(self):
        """The next event; None at a clean end of the stream."""
        while b"\n" not in self.pending:
            if self.ended:
                return None
            data = self._chunk()
            if not data:
                self.ended = True
                if self.pending.strip():
                    raise ValueError("partial event at the end of the stream")
                return None
            self.pending += data
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def events_until(self, pred, limit=100):
        out = []
        for _ in range(limit):
            ev = self.next_event()
            if ev is None:
                break
            out.append(ev)
            if pred(ev):
                break
        return out

    def close(self):
        self.conn.close()


def pod(name, ns="default", node="n1", labels=None, ip=None, ready=None):
    obj = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
           "spec": {"nodeName": node, "containers": [{"name": "c", "image": "vllm"}]}}
    if ip is not None or ready is not None:
        obj["status"] = {"phase": "Running", "podIP": ip or "",
                         "conditions": [{"type": "Ready",
                                         "status": "True" if ready else "False"}]}
    return obj
