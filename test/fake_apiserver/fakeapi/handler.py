"""One HTTP/1.1 connection: authentication, authorization, routing of the Kubernetes REST paths,
watch streams, and the /fake/ control API."""

import json
import random
import select
import socket
import ssl
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from . import auth, control, openapi, openapi_v2, protobuf, reviews, tables
from .kselectors import parse_field_selector, parse_label_selector
from .status import ApiError, bad_request, failure, not_found_resource

MAX_BODY = 8 << 20
COMPACT = (",", ":")  # the real server's encoding: no spaces
NON_RESOURCE_PATHS = ("/version", "/healthz", "/livez", "/readyz")


def _first_values(qs):
    return {k: v[0] for k, v in urllib.parse.parse_qs(qs, keep_blank_values=True).items()}


def _bool_param(value):
    return value in ("1", "true", "True")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver"
    sys_version = ""

    # A garbled request line still gets an HTTP/1.1 status line (http.server would answer it
    # HTTP/0.9 style, with a bare body).
    default_request_version = "HTTP/1.1"

    def send_error(self, code, message=None, explain=None):
        """http.server's own errors (bad request line, huge headers) as a Status, then close."""
        body = (json.dumps(failure(code, message or self.responses.get(code, ("",))[0]),
                           separators=COMPACT) + "\n").encode()
        self.close_connection = True
        try:
            self.send_response(code, message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Connection", "close")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, fmt, *args):  # requests go to /fake/requests, not stderr
        if self.server.hub.verbose:
            super().log_message(fmt, *args)

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    # ---- plumbing ----

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(64)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise bad_request("malformed chunked request body")
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY:
                    raise ApiError(413, "Request entity too large: limit is %d" % MAX_BODY)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, "Request entity too large: limit is %d" % MAX_BODY)
        return self.rfile.read(length) if length > 0 else b""

    def _json_body(self, raw):
        if not raw:
            raise bad_request("the request body is empty")
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            return protobuf.decode(raw)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            # YAML bodies are accepted only when they are JSON (kubectl always sends JSON).
            raise bad_request("the body of the request could not be decoded as JSON: %s" % e)

    def _send(self, code, obj, headers=None, raw=None, ctype="application/json"):
        body = raw if raw is not None else (json.dumps(obj, separators=COMPACT) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.entry["status"] = code

    def _send_error(self, err):
        self._send(err.code, err.status(), err.headers)

    # ---- entry point ----

    def _dispatch(self):
        hub = self.server.hub
        url = urllib.parse.urlsplit(self.path)
        path = url.path or "/"
        query = _first_values(url.query)
        self.entry = {"time": time.time(), "method": self.command, "path": path,
                      "query": url.query, "auth": "Authorization" in self.headers,
                      "via": "", "user": "", "status": 0,
                      "watch": _bool_param(query.get("watch", ""))}
        hub.log_request(self.entry)
        try:
            raw = self._read_body()
            if path.startswith("/fake/"):
                ident = self._authenticate()
                if not ident.admin:
                    raise ApiError(403, 'forbidden: User "%s" cannot use the fake control API'
                                   % ident.user)
                code, obj = control.handle(hub, self.command, path, query, raw)
                self._send(code, obj)
                return
            if self.server.control_only:
                raise ApiError(404, "the control listener serves only /fake/", "NotFound")
            mode = hub.mode
            if mode == "hang":
                while not hub.running.wait(0.2):
                    if hub.shutting_down:
                        self.close_connection = True
                        return
            elif mode == "garbage":  # 200 with a body no client can decode
                self._send(200, None, raw=b'{"kind":"Status","items":[{\x00\xff\xfe garbage <html>',
                           ctype="application/json")
                return
            elif mode not in ("running", "refuse"):
                raise ApiError(int(mode), "the fake API server is stopped (mode %s)" % mode)
            elif mode == "refuse":
                self.close_connection = True
                return
            if hub.latency_ms:
                time.sleep(hub.latency_ms / 1000.0)
            fault = hub.take_fault(self.command, self.path)
            if fault is not None:
                headers = {"Retry-After": "1"} if fault in (429, 503) else None
                raise ApiError(fault, "injected failure (/fake/fail)", headers=headers)
            ident = self._authenticate()
            self._route(path, query, raw, ident)
        except ApiError as e:
            self._send_error(e)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception as e:  # a bug in the fake: answer 500 and keep serving
            hub.warn("internal error on %s %s: %r" % (self.command, self.path, e))
            try:
                self._send(500, failure(500, "fake apiserver internal error: %r" % e))
            except OSError:
                self.close_connection = True

    def _authenticate(self):
        hub = self.server.hub
        ident = auth.Authenticator.from_cert(self.connection.getpeercert())
        header = self.headers.get("Authorization", "")
        if ident is None and header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer":
                with hub.store.cond:
                    ident = hub.authn.lookup_token(token.strip())
        if ident is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        ident = self._impersonate(ident)
        self.entry["user"] = ident.user
        self.entry["via"] = ident.via
        return ident

    def _impersonate(self, ident):
        """Impersonate-User / Impersonate-Group (kubectl --as/--as-group): the caller needs the
        `impersonate` verb on users, groups (or serviceaccounts) as on a real server."""
        user = self.headers.get("Impersonate-User")
        groups = self.headers.get_all("Impersonate-Group") or []
        if not user:
            if groups:
                raise bad_request("requested [%s] without impersonating a user"
                                  % ", ".join("{Group %s}" % g for g in groups))
            return ident
        sa = user.split(":")
        if len(sa) == 4 and sa[:2] == ["system", "serviceaccount"]:
            checks = [("serviceaccounts", sa[3], sa[2])]
            groups = groups + ["system:serviceaccounts", "system:serviceaccounts:" + sa[2]]
        else:
            checks = [("users", user, "")]
        checks += [("groups", g, "") for g in self.headers.get_all("Impersonate-Group") or []]
        for resource, name, ns in checks:
            self._authorize(ident, resource_attrs={"namespace": ns, "verb": "impersonate",
                                                   "group": "", "resource": resource,
                                                   "subresource": "", "name": name})
        return auth.Identity(user, groups, via=ident.via + "+impersonation")

    def _authorize(self, ident, resource_attrs=None, nonresource_attrs=None):
        if ident.admin:
            return
        hub = self.server.hub
        with hub.store.cond:
            allowed, _ = hub.authz.decide(ident.user, ident.groups, resource_attrs,
                                          nonresource_attrs)
        if not allowed:
            msg = auth.forbidden_message(ident.user, resource_attrs, nonresource_attrs)
            det = {}
            if resource_attrs is not None:
                if resource_attrs.get("name"):
                    det["name"] = resource_attrs["name"]
                if resource_attrs.get("group"):
                    det["group"] = resource_attrs["group"]
                det["kind"] = resource_attrs["resource"]
            raise ApiError(403, msg, "Forbidden", det)

    # ---- routing ----

    def _route(self, path, query, raw, ident):
        hub = self.server.hub
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
        if not parts or parts[0] not in ("api", "apis"):
            self._authorize(ident, nonresource_attrs={"path": path,
                                                      "verb": self.command.lower()})
            if self.command not in ("GET", "HEAD"):
                raise ApiError(405, "the server does not allow this method on the requested "
                               "resource", "MethodNotAllowed")
            if path == "/version":
                self._send(200, hub.version_info())
            elif path in NON_RESOURCE_PATHS:
                self._send(200, None, raw=b"ok", ctype="text/plain; charset=utf-8")
            elif path == "/":
                self._send(200, {"paths": hub.root_paths()})
            elif path == "/openapi/v3":
                self._send(200, openapi.root_document(hub.registry, hub.enabled_gvs()))
            elif path.startswith("/openapi/v3/") and openapi.lookup(
                    hub.registry, hub.enabled_gvs(), path[len("/openapi/v3/"):]) is not None:
                self._send(200, openapi.lookup(hub.registry, hub.enabled_gvs(),
                                               path[len("/openapi/v3/"):]))
            elif path == "/openapi/v2":
                self._openapi_v2()
            else:
                raise ApiError(404, "the server could not find the requested resource",
                               "NotFound", {})
            return
        if parts[0] == "api":
            if len(parts) == 1:
                self._discovery(ident, path, hub.registry.api_versions(hub.address_for_cidr()))
                return
            gv, rest = parts[1], parts[2:]
        else:
            if len(parts) == 1:
                self._discovery(ident, path, hub.registry.api_group_list(hub.enabled_gvs()))
                return
            if len(parts) == 2:
                doc = hub.registry.api_group(parts[1], hub.enabled_gvs())
                if doc is None:
                    raise not_found_resource()
                self._discovery(ident, path, doc)
                return
            gv, rest = parts[1] + "/" + parts[2], parts[3:]
        if gv not in hub.enabled_gvs():
            raise not_found_resource()
        if not rest:
            self._discovery(ident, path, hub.registry.resource_list(gv))
            return
        self._resource(gv, rest, query, raw, ident)

    def _strict(self, rt, query, body):
        # fieldValidation=Strict (what newer kubectl, e.g. v1.32, sends): unknown fields are a 400,
        # checked against the /openapi/v2 definitions (fakeapi/openapi_v2.py). Warn, Ignore accept.
        if query.get("fieldValidation") == "Strict":
            unknown = openapi_v2.unknown_fields(self.server.hub.registry, rt, body)
            if unknown:
                raise bad_request('%s in version "%s" cannot be handled as a %s: strict '
                                  'decoding error: %s' % (rt.kind, rt.version, rt.kind, ", ".join(
                                      'unknown field "%s"' % f for f in unknown)))
        return body

    def _openapi_v2(self):
        # fakeapi/openapi_v2.py: JSON or gnostic protobuf by Accept, ETag / If-None-Match.
        hub = self.server.hub
        got = openapi_v2.response(hub.registry, hub.enabled_gvs(), self.headers.get("Accept"))
        if got is None:
            self._send(406, None, raw=b"406 - Not Acceptable\n",
                       ctype="text/plain; charset=utf-8")
            return
        mt, body, etag = got
        headers = {"Etag": etag, "Vary": "Accept"}
        if etag in [t.strip() for t in (self.headers.get("If-None-Match") or "").split(",")]:
            self._send(304, None, headers=headers, raw=b"", ctype=mt)
            return
        self._send(200, None, headers=headers, raw=body, ctype=mt)

    def _discovery(self, ident, path, doc):
        self._authorize(ident, nonresource_attrs={"path": path, "verb": self.command.lower()})
        if self.command not in ("GET", "HEAD"):
            raise ApiError(405, "the server does not allow this method on the requested resource",
                           "MethodNotAllowed")
        self._send(200, doc)

    def _resource(self, gv, rest, query, raw, ident):
        hub = self.server.hub
        reg = hub.registry
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        rt = reg.lookup(gv, rest[0])
        if rt is None or len(rest) > 3 or (ns and not rt.namespaced):
            raise not_found_resource()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and not (sub == "status" and rt.status_subresource):
            raise not_found_resource()
        if name and rt.namespaced and not ns:
            raise not_found_resource()
        method = self.command
        watch = _bool_param(query.get("watch", ""))
        if not name:
            verb = {"GET": "watch" if watch else "list", "HEAD": "list", "POST": "create",
                    "DELETE": "deletecollection"}.get(method)
        else:
            verb = {"GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}.get(method)
        if verb is None or verb not in rt.verbs:
            raise ApiError(405, "the server does not allow this method on the requested resource",
                           "MethodNotAllowed")
        auth_name = name
        if verb in ("watch", "list"):
            _, auth_name = parse_field_selector(query.get("fieldSelector", ""), rt)
        self._authorize(ident, resource_attrs={
            "namespace": ns, "verb": verb, "group": rt.group, "resource": rt.plural,
            "subresource": sub, "name": auth_name or ""})
        dry_run = query.get("dryRun") == "All"
        api = hub.api
        accept = self.headers.get("Accept", "")
        if not rt.stored:
            body = self._json_body(raw)
            with hub.store.cond:
                if rt.plural == "tokenreviews":
                    out = reviews.token_review(hub.authn, body)
                elif rt.plural == "subjectaccessreviews":
                    out = reviews.subject_access_review(hub.authz, body)
                else:
                    out = reviews.self_subject_access_review(hub.authz, ident, body)
            self._send(201, out)
            return
        if verb == "watch":
            self._watch(rt, ns, query, ident, accept)
        elif verb == "list":
            lst = api.list(rt, ns, query)
            self._send(200, tables.maybe_table(rt, lst, accept, query, list_=True))
        elif verb == "get":
            obj = api.get(rt, ns, name)
            self._send(200, tables.maybe_table(rt, obj, accept, query))
        elif verb == "create":
            body = self._strict(rt, query, self._json_body(raw))
            self._send(201, api.create(rt, ns, body, dry_run))
        elif verb == "update":
            body = self._strict(rt, query, self._json_body(raw))
            self._send(200, api.update(rt, ns, name, body, sub, dry_run))
        elif verb == "patch":
            ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
            existed = api.exists(rt, ns, name)
            body = self._strict(rt, query, self._json_body(raw))
            out = api.patch(rt, ns, name, body, ctype, sub, dry_run,
                            query.get("fieldManager", ""))
            self._send(200 if existed else 201, out)
        elif verb == "delete":
            options = self._json_body(raw) if raw else {}
            if "gracePeriodSeconds" in query:
                options["gracePeriodSeconds"] = int(query["gracePeriodSeconds"])
            out = api.delete(rt, ns, name, options, dry_run)
            self._send(200, out)
        elif verb == "deletecollection":
            options = self._json_body(raw) if raw else {}
            self._send(200, api.delete_collection(rt, ns, query, options, dry_run))

    # ---- watch ----

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _event(self, etype, obj, rt, accept, query):
        if etype not in ("ERROR", "BOOKMARK"):
            obj = tables.maybe_table(rt, obj, accept, query)
        line = json.dumps({"type": etype, "object": obj}, separators=COMPACT) + "\n"
        self._chunk(line.encode())

    def _bookmark(self, rt, rv, initial_end=False):
        md = {"resourceVersion": str(rv), "creationTimestamp": None}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": md}

    def _client_gone(self):
        """True when the watching client closed its end (a quiet watch would otherwise hold its
        thread until the timeout). A watching client sends nothing, so anything readable is
        either the TLS close alert or EOF."""
        sock = self.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable and not sock.pending():
                return False
            sock.settimeout(0.05)
            try:
                return sock.recv(4096) == b""
            finally:
                sock.settimeout(self.server.idle_timeout)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (OSError, ValueError, ssl.SSLError):
            return True

    def _watch(self, rt, ns, query, ident, accept):
        hub = self.server.hub
        store = hub.store
        label_match = parse_label_selector(query.get("labelSelector", ""))
        field_match, _ = parse_field_selector(query.get("fieldSelector", ""), rt)
        timeout = query.get("timeoutSeconds", "")
        try:
            timeout = float(timeout) if timeout else 0.0
        except ValueError:
            raise bad_request("invalid timeoutSeconds %r" % timeout)
        if timeout <= 0:  # as the real server: its own timeout, jittered
            timeout = hub.watch_timeout * (1 + random.random())
        rv_param = query.get("resourceVersion", "")
        if rv_param and not rv_param.isdigit():
            raise bad_request("invalid resource version %r" % rv_param)
        bookmarks = _bool_param(query.get("allowWatchBookmarks", ""))
        send_initial = query.get("sendInitialEvents", "")
        if send_initial == "true" and rv_param not in ("", "0"):
            raise ApiError(422, "sendInitialEvents is forbidden for watch unless resourceVersion "
                           "is empty or 0", "Invalid")
        w = None
        expired = None
        initial = []
        with store.cond:
            now_rv = store.rv
            if rv_param in ("", "0"):
                if send_initial != "false":
                    initial = [o for o in store.items(rt.key, ns or None)]
                start = now_rv
            else:
                start = int(rv_param)
                if start < store.compacted_rv:
                    expired = "too old resource version: %d (%d)" % (start, store.compacted_rv)
            w = store_watch = hub.new_watch(rt, ns, label_match, field_match, start, bookmarks,
                                            time.time() + timeout, self.connection, ident.user,
                                            self.path)
            initial = [o for o in initial if w.matches(o)]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.entry["status"] = 200
        clean = True
        try:
            if expired:
                self._event("ERROR", failure(410, expired, "Expired"), rt, accept, query)
                return
            for obj in initial:
                self._event("ADDED", obj, rt, accept, query)
            if send_initial == "true" and bookmarks:
                self._event("BOOKMARK", self._bookmark(rt, start, initial_end=True), rt, accept,
                            query)
            next_bookmark = time.time() + hub.bookmark_interval
            while True:
                events = []
                with store.cond:
                    while True:
                        now = time.time()
                        if w.closed or hub.shutting_down:
                            break
                        if store.rv > w.rv or now >= w.deadline or w.bookmark_now or \
                                w.inject_error:
                            break
                        if bookmarks and now >= next_bookmark:
                            break
                        wait = w.deadline - now
                        if bookmarks:
                            wait = min(wait, next_bookmark - now)
                        store.cond.wait(max(0.01, min(wait, 1.0)))
                        if self._client_gone():
                            w.closed = True
                    if w.closed or hub.shutting_down:
                        clean = not w.abrupt
                        if w.midobject:  # cut inside an event: half a JSON object, no newline
                            self._chunk(b'{"type":"MODIFIED","object":{"kind":"Pod","metadata":'
                                        b'{"name":"cut-he')
                        return
                    if w.inject_error is not None:
                        events = [("ERROR", w.inject_error)]
                    elif w.rv < store.compacted_rv:
                        events = [("ERROR", failure(410, "too old resource version: %d (%d)" % (
                            w.rv, store.compacted_rv), "Expired"))]
                    else:
                        for ev in store.events_after(w.rv):
                            if ev.rkey != rt.key:
                                continue
                            now_match = w.matches(ev.obj)
                            if ev.type == "MODIFIED" and ev.old is not None:
                                was = w.matches(ev.old)
                                if was and now_match:
                                    events.append(("MODIFIED", ev.obj))
                                elif was:
                                    events.append(("DELETED", ev.obj))
                                elif now_match:
                                    events.append(("ADDED", ev.obj))
                            elif now_match:
                                events.append((ev.type, ev.obj))
                        w.rv = store.rv
                    rv_now = w.rv
                    send_bookmark = bookmarks and (w.bookmark_now or time.time() >= next_bookmark)
                    w.bookmark_now = False
                for etype, obj in events:
                    self._event(etype, obj, rt, accept, query)
                if events and events[0][0] == "ERROR":
                    return
                if send_bookmark:
                    self._event("BOOKMARK", self._bookmark(rt, rv_now), rt, accept, query)
                    next_bookmark = time.time() + hub.bookmark_interval
                if time.time() >= w.deadline:
                    return
        except (OSError, ValueError):
            clean = False
        finally:
            hub.drop_watch(store_watch)
            if clean:
                try:
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    self.close_connection = True
            else:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
