"""The fake API server: owns the store, the API semantics, authentication, the listeners, the
stop modes, fault injection and the request log. Handlers reach it as `self.server.hub`."""

import collections
import copy
import sys
import threading
import time

from . import auth
from .api import Api
from .handler import Handler
from .listener import Listener
from .resources import Registry
from .status import ApiError
from .store import Store, Watch

ADMIN_USER = "fake-admin"


class StateError(Exception):
    pass


class FakeApiServer:
    def __init__(self, bind, port, ssl_ctx, ca_pem, history_cap=10000, watch_timeout=1800.0,
                 bookmark_interval=5.0, disabled=(), verbose=False, request_log_cap=10000,
                 on_admin_token=None):
        self.registry = Registry()
        self.store = Store(history_cap)
        self.authn = auth.Authenticator(self.store)
        self.authz = auth.Authorizer(self.store)
        self.api = Api(self.store, self.registry, self.authn, ca_pem)
        self.bind = bind
        self.watch_timeout = watch_timeout
        self.bookmark_interval = bookmark_interval
        self.verbose = verbose
        self.on_admin_token = on_admin_token
        self.disabled = set(disabled)
        self.mode = "running"
        self.running = threading.Event()
        self.running.set()
        self.shutting_down = False
        self.latency_ms = 0
        self.lock = threading.Lock()
        self.faults = []
        self.log = collections.deque(maxlen=request_log_cap)
        self.conns = {}  # socket -> control_only
        self.main = Listener(bind, port, ssl_ctx, Handler, self, control_only=False)
        self.control = Listener(bind, 0, ssl_ctx, Handler, self, control_only=True)
        self.admin_token = auth.new_token("admin")
        self.authn.add_token(self.admin_token, auth.Identity(ADMIN_USER, ["system:masters"]))
        with self.store.cond:
            for obj in auth.bootstrap_rbac():
                rt = self.registry.by_kind(obj["apiVersion"], obj["kind"])
                self.api.create(rt, "", obj)
            for ns in ("default", "kube-system", "kube-public"):
                self.api.create(self.registry.get("", "namespaces"), "",
                                {"metadata": {"name": ns}})
            # A watch may resume from the start: nothing before this point was ever seen.
            self.store.compacted_rv = self.store.rv

    def use_admin_token(self, token):
        """Replace the generated admin token (--keep-certs keeps the previous run's)."""
        with self.store.cond:
            self.authn.remove_token(self.admin_token)
            self.admin_token = token
            self.authn.add_token(token, auth.Identity(ADMIN_USER, ["system:masters"]))

    # ---- lifecycle ----

    def open(self):
        self.main.open()
        self.control.open()

    def host_port(self, listener):
        host = "[%s]" % self.bind if ":" in self.bind else self.bind
        if self.bind in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif self.bind == "::":
            host = "[::1]"
        return "%s:%d" % (host, listener.port)

    def url(self):
        return "https://" + self.host_port(self.main)

    def control_url(self):
        return "https://" + self.host_port(self.control)

    def address_for_cidr(self):
        return self.host_port(self.main)

    def shutdown(self):
        self.shutting_down = True
        self.running.set()
        with self.store.cond:
            self.store.close_watches(abrupt=False)
        self.main.close()
        self.control.close()
        self._close_conns(lambda control: True)

    def track(self, sock, control_only):
        with self.lock:
            self.conns[sock] = control_only

    def untrack(self, sock):
        with self.lock:
            self.conns.pop(sock, None)

    def _close_conns(self, pred):
        with self.lock:
            socks = [s for s, c in self.conns.items() if pred(c)]
        for s in socks:
            try:
                s.shutdown(2)
            except OSError:
                pass

    def stop(self, mode):
        with self.store.cond:
            closed = self.store.close_watches(abrupt=True)
        self.mode = mode
        if mode == "hang":
            self.running.clear()
        else:
            self.running.set()  # connections held by an earlier hang go on (and meet the mode)
        if mode == "refuse":
            self.main.close()
            self._close_conns(lambda control: not control)
        return {"mode": mode, "closedWatches": closed}

    def start(self):
        if not self.main.is_open:
            try:
                self.main.open()
            except OSError as e:
                raise ApiError(500, "cannot listen on port %d again: %s" % (self.main.port, e))
        self.mode = "running"
        self.running.set()
        return {"mode": "running", "url": self.url()}

    # ---- faults and request log ----

    def add_fault(self, regex, code, count, method):
        with self.lock:
            self.faults.append({"regex": regex, "code": code, "left": count, "method": method})

    def clear_faults(self):
        with self.lock:
            n = len(self.faults)
            self.faults = []
            return n

    def list_faults(self):
        with self.lock:
            return [{"path": f["regex"].pattern, "code": f["code"], "left": f["left"],
                     "method": f["method"]} for f in self.faults]

    def take_fault(self, method, target):
        """The code of the first matching injected fault (count <= 0 means forever)."""
        with self.lock:
            for f in self.faults:
                if f["method"] and f["method"] != method:
                    continue
                if not f["regex"].search(target):
                    continue
                if f["left"] > 0:
                    f["left"] -= 1
                    if f["left"] == 0:
                        self.faults.remove(f)
                return f["code"]
        return None

    def log_request(self, entry):
        with self.lock:
            self.log.append(entry)

    def requests(self):
        with self.lock:
            return [dict(e) for e in self.log]

    def clear_requests(self):
        with self.lock:
            n = len(self.log)
            self.log.clear()
            return n

    def warn(self, msg):
        print("fake-apiserver: " + msg, file=sys.stderr, flush=True)

    # ---- groups, watches, tokens, state ----

    def enabled_gvs(self):
        return [gv for gv in self.registry.group_versions() if gv not in self.disabled]

    def set_gv_enabled(self, gv, enabled):
        if enabled:
            self.disabled.discard(gv)
        else:
            self.disabled.add(gv)
            with self.store.cond:
                self.store.close_watches(lambda w: w.rt.gv == gv, abrupt=False)

    def new_watch(self, rt, ns, label_match, field_match, rv, bookmarks, deadline, conn, user,
                  target):
        w = Watch(rt, ns, label_match, field_match, rv, bookmarks, deadline, conn, user, target)
        self.store.watches.add(w)
        return w

    def drop_watch(self, w):
        with self.store.cond:
            self.store.watches.discard(w)

    def rotate_token(self, user, keep_old):
        with self.store.cond:
            old = self.authn.tokens_of(user)
            if not old:
                raise ApiError(404, "no static token for user %r" % user, "NotFound")
            ident = self.authn.static[old[0]]
            token = auth.new_token("rotated")
            self.authn.add_token(token, ident)
            if not keep_old:
                for t in old:
                    self.authn.remove_token(t)
            if user == ADMIN_USER:
                self.admin_token = token
        if user == ADMIN_USER and self.on_admin_token:
            self.on_admin_token(token)
        return {"user": user, "token": token, "revoked": 0 if keep_old else len(old)}

    def load_state(self, doc):
        """A JSON list of objects, a `kind: List`, or {"objects": [...], "tokens": {token:
        {"user": ..., "groups": [...]}}}. Objects keep the status they carry; an existing object
        of the same name is replaced. Returns the number of objects loaded."""
        if isinstance(doc, dict) and doc.get("kind") == "List":
            objects, tokens = doc.get("items") or [], {}
        elif isinstance(doc, dict):
            objects, tokens = doc.get("objects") or [], doc.get("tokens") or {}
        elif isinstance(doc, list):
            objects, tokens = doc, {}
        else:
            raise ApiError(400, "state must be a JSON list of objects or an object with "
                           "\"objects\" and \"tokens\"", "BadRequest")
        if not isinstance(objects, list) or not isinstance(tokens, dict):
            raise ApiError(400, "state: objects must be a list and tokens a map", "BadRequest")
        with self.store.cond:
            for token, spec in tokens.items():
                if not isinstance(spec, dict) or not spec.get("user"):
                    raise ApiError(400, "state: token %r needs a user" % token, "BadRequest")
                self.authn.add_token(token, auth.Identity(spec["user"], spec.get("groups") or [],
                                                          spec.get("uid", "")))
            for i, obj in enumerate(objects):
                if not isinstance(obj, dict):
                    raise ApiError(400, "state: object %d is not a JSON object" % i, "BadRequest")
                rt = self.registry.by_kind(obj.get("apiVersion"), obj.get("kind"))
                if rt is None or not rt.stored:
                    raise ApiError(400, "state: object %d: the fake does not serve %s %s"
                                   % (i, obj.get("apiVersion"), obj.get("kind")), "BadRequest")
                obj = copy.deepcopy(obj)
                md = obj.setdefault("metadata", {})
                md.pop("resourceVersion", None)
                ns = md.get("namespace", "default") if rt.namespaced else ""
                name = md.get("name", "")
                if name and self.store.get(rt.key, ns, name) is not None:
                    self.api.replace(rt, ns, name, obj)
                else:
                    self.api.create(rt, ns, obj, keep_status=True)
        return len(objects)

    def state_summary(self):
        with self.store.cond:
            return {"mode": self.mode, "url": self.url(), "controlUrl": self.control_url(),
                    "resourceVersion": str(self.store.rv),
                    "compactedResourceVersion": str(self.store.compacted_rv),
                    "history": len(self.store.history), "watches": len(self.store.watches),
                    "enabled": self.enabled_gvs(), "latencyMs": self.latency_ms,
                    "gracefulSeconds": self.api.graceful_seconds, "time": time.time()}

    def version_info(self):
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake",
                "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64"}

    def root_paths(self):
        paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3",
                 "/readyz", "/version"]
        for gv in self.enabled_gvs():
            if "/" in gv:
                paths += ["/apis/" + gv.split("/")[0], "/apis/" + gv]
        return sorted(set(paths))
