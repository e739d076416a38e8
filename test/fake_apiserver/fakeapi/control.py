"""The /fake/ control API (admin only; also on the control listener, which never stops)."""

import json
import re

from . import auth
from .status import ApiError, bad_request, failure


def _body(raw):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise bad_request("control body is not JSON: %s" % e)


def _int(query, key, default):
    try:
        return int(query.get(key, default))
    except ValueError:
        raise bad_request("%s must be an integer" % key)


def _float(query, key, default):
    try:
        return float(query.get(key, default))
    except ValueError:
        raise bad_request("%s must be a number" % key)


def handle(hub, method, path, query, raw):
    """Returns (code, json object)."""
    op = path[len("/fake/"):].strip("/")
    key = (method, op)
    if key == ("POST", "stop"):
        mode = query.get("mode", "refuse")
        if mode not in ("refuse", "hang", "garbage") and \
                not (mode.isdigit() and 400 <= int(mode) <= 599):
            raise bad_request("mode must be refuse, hang, garbage or an HTTP status code (500)")
        return 200, hub.stop(mode)
    if key == ("POST", "start"):
        return 200, hub.start()
    if key == ("POST", "compact"):
        with hub.store.cond:
            hub.store.compact()
            return 200, {"compactedResourceVersion": str(hub.store.compacted_rv)}
    if key == ("POST", "close-watches"):
        mode = query.get("mode", "abrupt")
        if mode not in ("abrupt", "clean", "midobject"):
            raise bad_request("mode must be abrupt, clean or midobject")
        with hub.store.cond:
            n = hub.store.close_watches(abrupt=mode != "clean", midobject=mode == "midobject")
        return 200, {"closed": n}
    if key == ("POST", "bookmark"):
        with hub.store.cond:
            n = 0
            for w in hub.store.watches:
                if w.bookmarks:
                    w.bookmark_now = True
                    n += 1
            hub.store.cond.notify_all()
        return 200, {"watches": n}
    if key == ("POST", "watch-error"):
        code = _int(query, "code", 410)
        if not 400 <= code <= 599:
            raise bad_request("code must be 400..599")
        reason = "Expired" if code == 410 else None
        status = failure(code, query.get("message") or (
            "too old resource version" if code == 410 else "injected watch error"), reason)
        with hub.store.cond:
            n = 0
            for w in hub.store.watches:
                if not w.closed:
                    w.inject_error = status
                    n += 1
            hub.store.cond.notify_all()
        return 200, {"watches": n}
    if key == ("GET", "watches"):
        with hub.store.cond:
            return 200, {"watches": [{"resource": w.rt.gv + "/" + w.rt.plural,
                                      "namespace": w.namespace, "user": w.user,
                                      "path": w.target, "resourceVersion": str(w.rv),
                                      "bookmarks": w.bookmarks, "since": w.started}
                                     for w in hub.store.watches]}
    if key == ("POST", "fail"):
        pattern = query.get("path", ".*")
        try:
            regex = re.compile(pattern)
        except re.error as e:
            raise bad_request("path is not a valid regular expression: %s" % e)
        code = _int(query, "code", 500)
        if not 400 <= code <= 599:
            raise bad_request("code must be 400..599")
        count = _int(query, "count", 1)
        hub.add_fault(regex, code, count, query.get("method", "").upper())
        return 200, {"path": pattern, "code": code, "count": count}
    if key == ("DELETE", "fail"):
        return 200, {"cleared": hub.clear_faults()}
    if key == ("GET", "fail"):
        return 200, {"faults": hub.list_faults()}
    if key == ("POST", "latency"):
        ms = _int(query, "ms", 0)
        if ms < 0 or ms > 600000:
            raise bad_request("ms must be 0..600000")
        hub.latency_ms = ms
        return 200, {"ms": ms}
    if key in (("POST", "disable-group"), ("POST", "enable-group")):
        gv = query.get("gv", "")
        if gv not in hub.registry.group_versions():
            raise bad_request("unknown group/version %r (known: %s)"
                              % (gv, ", ".join(hub.registry.group_versions())))
        hub.set_gv_enabled(gv, op == "enable-group")
        return 200, {"enabled": sorted(hub.enabled_gvs())}
    if key == ("GET", "requests"):
        entries = hub.requests()
        if query.get("path"):
            try:
                regex = re.compile(query["path"])
            except re.error as e:
                raise bad_request("path is not a valid regular expression: %s" % e)
            entries = [e for e in entries
                       if regex.search(e["path"] + ("?" + e["query"] if e["query"] else ""))]
        if query.get("since"):
            since = _float(query, "since", 0)
            entries = [e for e in entries if e["time"] >= since]
        return 200, {"requests": entries}
    if key == ("DELETE", "requests"):
        return 200, {"cleared": hub.clear_requests()}
    if key == ("POST", "rotate-token"):
        user = query.get("user", "")
        if not user:
            raise bad_request("user is required")
        return 200, hub.rotate_token(user, query.get("keep") in ("1", "true"))
    if key == ("POST", "tokens"):
        body = _body(raw) or {}
        token = body.get("token") or query.get("token")
        user = body.get("user") or query.get("user")
        groups = body.get("groups")
        if groups is None:
            groups = [g for g in query.get("groups", "").split(",") if g]
        if not token or not user or not isinstance(groups, list):
            raise bad_request("token and user are required (groups a list)")
        with hub.store.cond:
            hub.authn.add_token(token, auth.Identity(user, groups, body.get("uid", "")))
        return 200, {"token": token, "user": user}
    if key == ("DELETE", "tokens"):
        with hub.store.cond:
            return 200, {"removed": hub.authn.remove_token(query.get("token", ""))}
    if key == ("POST", "objects"):
        body = _body(raw)
        if body is None:
            raise bad_request("a JSON list of objects (or a state document) is required")
        return 200, {"objects": hub.load_state(body)}
    if key == ("POST", "graceful"):
        seconds = _float(query, "seconds", 0)
        if seconds < 0 or seconds > 3600:
            raise bad_request("seconds must be 0..3600")
        hub.api.graceful_seconds = seconds
        return 200, {"seconds": seconds}
    if key == ("GET", "state"):
        return 200, hub.state_summary()
    raise ApiError(404, "unknown control operation %s /fake/%s" % (method, op), "NotFound")
