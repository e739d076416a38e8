"""REST semantics on the store: create/get/list/update/patch/delete as the real API server
applies them (defaults, immutable fields, preconditions, status subresource, no-op updates,
pagination, resourceVersion rules), plus the token controller for service-account Secrets and
graceful pod deletion."""

import base64
import copy
import json
import re
import secrets as pysecrets
import threading
import time
import uuid

from . import auth, patches
from .kselectors import parse_field_selector, parse_label_selector
from .status import (ApiError, already_exists, bad_request, conflict, invalid, object_not_found,
                     success, details)

DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
TOP_LEVEL_ORDER = ("kind", "apiVersion", "metadata")


def ordered(obj):
    """kind, apiVersion, metadata first, as the real server serializes."""
    out = {k: obj[k] for k in TOP_LEVEL_ORDER if k in obj}
    out.update((k, v) for k, v in obj.items() if k not in out)
    return out


def _body_only(obj):
    """What a generation bump looks at: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def _encode_continue(rv, key):
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": "%s/%s\x00" % key})
    return base64.b64encode(raw.encode()).decode()


def _decode_continue(token):
    try:
        data = json.loads(base64.b64decode(token, validate=True))
        ns, _, name = data["start"].rstrip("\x00").partition("/")
        return int(data["rv"]), (ns, name)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise bad_request("continue key is not valid: illegal base64 data or JSON")


class Api:
    def __init__(self, store, registry, authn, ca_pem):
        self.store = store
        self.registry = registry
        self.authn = authn
        self.ca_pem = ca_pem
        self.graceful_seconds = 0.0  # /fake/graceful: pod deletes set deletionTimestamp first

    # ---- helpers ----

    def _validate_name(self, rt, name):
        if rt.group == auth.RBAC:
            ok = name not in (".", "..") and "/" not in name and "%" not in name
        elif rt.plural == "namespaces":
            ok = len(name) <= 63 and DNS_LABEL.fullmatch(name)
        else:
            ok = len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name)
        if not ok:
            raise invalid(rt, name, [("metadata.name", 'Invalid value: "%s": a lowercase RFC 1123 '
                                      "subdomain must consist of lower case alphanumeric "
                                      "characters, '-' or '.'" % name)])

    def _check_body(self, rt, body):
        if not isinstance(body, dict):
            raise bad_request("the body of the request was in an unknown format - accepted "
                              "media types include: application/json, application/yaml")
        body.setdefault("apiVersion", rt.api_version)
        body.setdefault("kind", rt.kind)
        if body["apiVersion"] != rt.api_version or body["kind"] != rt.kind:
            raise bad_request("the API version in the data (%s) does not match the expected API "
                              "version (%s)" % (body["apiVersion"], rt.api_version)
                              if body["apiVersion"] != rt.api_version else
                              "the kind in the data (%s) does not match the expected kind (%s)"
                              % (body["kind"], rt.kind))
        md = body.get("metadata")
        if md is None:
            md = body["metadata"] = {}
        if not isinstance(md, dict):
            raise bad_request("metadata must be an object")
        for key in ("labels", "annotations"):
            val = md.get(key)
            if val is not None and (not isinstance(val, dict) or
                                    not all(isinstance(v, str) for v in val.values())):
                raise invalid(rt, md.get("name", ""), [("metadata." + key,
                                                        "Invalid value: must be a string map")])
        return md

    def _namespace_of(self, rt, url_ns, md):
        if not rt.namespaced:
            md.pop("namespace", None)
            return ""
        ns = md.get("namespace") or url_ns
        if url_ns and ns != url_ns:
            raise bad_request("the namespace of the provided object does not match the namespace "
                              "sent on the request")
        if not ns:
            raise bad_request("the namespace of the object is required")
        md["namespace"] = ns
        return ns

    def _ensure_namespace(self, ns):
        # Documented divergence: a namespace is created on first use instead of a 404, so tests
        # need not create one for every object.
        nsrt = self.registry.get("", "namespaces")
        if ns and self.store.get(nsrt.key, "", ns) is None:
            self._store_new(nsrt, {"apiVersion": "v1", "kind": "Namespace",
                                   "metadata": {"name": ns}}, keep_status=False)

    def _store_new(self, rt, obj, keep_status):
        md = obj["metadata"]
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if rt.plural != "pods":
            md.setdefault("generation", 1)
        if rt.plural == "pods":
            if not keep_status or "status" not in obj:
                obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif rt.plural == "namespaces":
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md["name"]
        elif rt.status_subresource and not keep_status:
            obj.pop("status", None)
        if rt.plural == "secrets":
            self._fold_string_data(obj)
            self._token_controller(obj)
            obj.setdefault("type", "Opaque")
        return self.store.put(rt.key, ordered(obj), "ADDED")

    @staticmethod
    def _fold_string_data(secret):
        """stringData is write-only: merged into data (base64) as the real server does."""
        extra = secret.pop("stringData", None)
        if isinstance(extra, dict):
            data = secret.setdefault("data", {})
            for k, v in extra.items():
                data[k] = base64.b64encode(str(v).encode()).decode()

    def _token_controller(self, secret):
        """Fill a service-account token Secret the way the legacy token controller does."""
        if secret.get("type") != auth.SA_TOKEN_TYPE:
            return
        md = secret["metadata"]
        ann = md.setdefault("annotations", {})
        sa_name = ann.get(auth.SA_NAME_ANNOTATION)
        if not sa_name:
            raise invalid(self.registry.get("", "secrets"), md["name"],
                          [("metadata.annotations[kubernetes.io/service-account.name]",
                            "Required value")])
        sa = self.store.get(("", "serviceaccounts"), md["namespace"], sa_name)
        if sa is not None:
            ann[auth.SA_UID_ANNOTATION] = sa["metadata"]["uid"]
        data = secret.setdefault("data", {})
        if not data.get("token"):
            token = auth.new_sa_token(md["namespace"], sa_name)
            data["token"] = base64.b64encode(token.encode()).decode()
        data["ca.crt"] = base64.b64encode(self.ca_pem.encode()).decode()
        data["namespace"] = base64.b64encode(md["namespace"].encode()).decode()

    def _get_existing(self, rt, ns, name):
        obj = self.store.get(rt.key, ns, name)
        if obj is None:
            raise object_not_found(rt, name)
        return obj

    # ---- operations (each takes the store lock) ----

    def create(self, rt, url_ns, body, dry_run=False, keep_status=False):
        with self.store.cond:
            md = self._check_body(rt, body)
            if md.get("resourceVersion"):
                raise bad_request("resourceVersion should not be set on objects to be created")
            if not md.get("name"):
                if md.get("generateName"):
                    md["name"] = md["generateName"] + "".join(
                        pysecrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
                else:
                    raise invalid(rt, "", [("metadata.name", "Required value: name or "
                                            "generateName is required")])
            self._validate_name(rt, md["name"])
            ns = self._namespace_of(rt, url_ns, md)
            if self.store.get(rt.key, ns, md["name"]) is not None:
                raise already_exists(rt, md["name"])
            obj = copy.deepcopy(body)
            if dry_run:
                return ordered(obj)
            self._ensure_namespace(ns)
            return self._store_new(rt, obj, keep_status)

    def get(self, rt, ns, name):
        with self.store.cond:
            return self._get_existing(rt, ns, name)

    def exists(self, rt, ns, name):
        with self.store.cond:
            return self.store.get(rt.key, ns, name) is not None

    def _write(self, rt, ns, name, old, new, subresource, dry_run):
        """Common tail of update and patch: immutable fields, status split, no-op detection."""
        md = self._check_body(rt, new)
        if md.get("name", name) != name:
            raise bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                              % (md.get("name"), name))
        if rt.namespaced and md.get("namespace", ns) != ns:
            raise bad_request("the namespace of the provided object does not match the namespace "
                              "sent on the request")
        rv = md.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        if subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = copy.deepcopy(new["status"])
            else:
                result.pop("status", None)
        else:
            result = copy.deepcopy(new)
            newmd = result["metadata"]
            for key in ("uid", "creationTimestamp", "deletionTimestamp",
                        "deletionGracePeriodSeconds", "generation"):
                if key in old["metadata"]:
                    newmd[key] = old["metadata"][key]
                else:
                    newmd.pop(key, None)
            newmd["name"] = name
            if rt.namespaced:
                newmd["namespace"] = ns
            if rt.status_subresource:
                if "status" in old:
                    result["status"] = copy.deepcopy(old["status"])
                else:
                    result.pop("status", None)
            if rt.plural == "secrets":
                self._fold_string_data(result)
                self._token_controller(result)
            if "generation" in newmd and _body_only(result) != _body_only(old):
                newmd["generation"] = old["metadata"]["generation"] + 1
        result["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        result = ordered(result)
        if result == old or dry_run:
            return result
        return self.store.put(rt.key, result, "MODIFIED", old=old)

    def replace(self, rt, ns, name, body):
        """The whole object, status included, as one MODIFIED event (/fake/objects on an
        existing name): uid and creationTimestamp are kept."""
        with self.store.cond:
            old = self._get_existing(rt, ns, name)
            new = copy.deepcopy(body)
            md = self._check_body(rt, new)
            md["name"] = name
            if rt.namespaced:
                md["namespace"] = ns
            for key in ("uid", "creationTimestamp", "generation"):
                if key in old["metadata"]:
                    md[key] = old["metadata"][key]
            if rt.plural == "secrets":
                self._fold_string_data(new)
                self._token_controller(new)
            if "generation" in md and _body_only(new) != _body_only(old):
                md["generation"] = old["metadata"]["generation"] + 1
            md["resourceVersion"] = old["metadata"]["resourceVersion"]
            new = ordered(new)
            if new == old:
                return old
            return self.store.put(rt.key, new, "MODIFIED", old=old)

    def update(self, rt, ns, name, body, subresource="", dry_run=False):
        with self.store.cond:
            old = self._get_existing(rt, ns, name)
            return self._write(rt, ns, name, old, copy.deepcopy(body), subresource, dry_run)

    def patch(self, rt, ns, name, body, content_type, subresource="", dry_run=False,
              field_manager=""):
        with self.store.cond:
            old = self.store.get(rt.key, ns, name)
            if content_type == "application/apply-patch+yaml":
                if not field_manager:
                    raise bad_request("PATCH, application/apply-patch+yaml requires fieldManager "
                                      "parameter")
                if old is None:
                    body = copy.deepcopy(body)
                    if isinstance(body, dict):
                        body.setdefault("metadata", {}).setdefault("name", name)
                if old is None and not subresource:
                    return self.create(rt, ns, body, dry_run)
            if old is None:
                raise object_not_found(rt, name)
            if content_type == "application/merge-patch+json":
                new = patches.merge_patch(old, body)
            elif content_type in ("application/strategic-merge-patch+json",
                                  "application/apply-patch+yaml"):
                if not rt.builtin and content_type != "application/apply-patch+yaml":
                    raise ApiError(415, "strategic merge patch is not supported for custom "
                                   "resources", "UnsupportedMediaType")
                if not isinstance(body, dict):
                    raise bad_request("the body of the request was not a JSON object")
                new = patches.strategic_merge_patch(old, body, rt.kind)
            elif content_type == "application/json-patch+json":
                new = patches.json_patch(old, body)
            else:
                raise ApiError(415, "the body of the request was in an unknown format - accepted "
                               "media types include: application/json-patch+json, "
                               "application/merge-patch+json, application/apply-patch+yaml, "
                               "application/strategic-merge-patch+json", "UnsupportedMediaType")
            if not isinstance(new, dict):
                raise bad_request("the patched object is not a JSON object")
            return self._write(rt, ns, name, old, new, subresource, dry_run)

    def delete(self, rt, ns, name, options=None, dry_run=False):
        options = options or {}
        with self.store.cond:
            old = self._get_existing(rt, ns, name)
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"].get("uid"):
                raise ApiError(409, "Precondition failed: UID in precondition: %s, UID in object "
                               "meta: %s" % (pre["uid"], old["metadata"].get("uid")), "Conflict",
                               details(rt, name))
            if pre.get("resourceVersion") and \
                    pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(rt, name)
            if dry_run:
                return old
            grace = options.get("gracePeriodSeconds")
            if rt.plural == "pods" and self.graceful_seconds > 0 and grace != 0:
                if "deletionTimestamp" in old["metadata"]:
                    return old
                seconds = self.graceful_seconds if grace is None else min(float(grace),
                                                                           self.graceful_seconds)
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
                new["metadata"]["deletionGracePeriodSeconds"] = int(seconds)
                stored = self.store.put(rt.key, new, "MODIFIED", old=old)
                uid = old["metadata"]["uid"]
                timer = threading.Timer(seconds, self._finish_delete, (rt, ns, name, uid))
                timer.daemon = True
                timer.start()
                return stored
            gone = self.store.remove(rt.key, ns, name)
            if rt.plural == "namespaces":
                for other in self.registry.types:
                    if other.namespaced and other.stored:
                        for obj in self.store.items(other.key, name):
                            self.store.remove(other.key, name, obj["metadata"]["name"])
            d = details(rt, name)
            d["uid"] = gone["metadata"].get("uid", "")
            return success(d)

    def _finish_delete(self, rt, ns, name, uid):
        with self.store.cond:
            obj = self.store.get(rt.key, ns, name)
            if obj is not None and obj["metadata"].get("uid") == uid:
                self.store.remove(rt.key, ns, name)

    def delete_collection(self, rt, ns, query, options=None, dry_run=False):
        with self.store.cond:
            result = self.list(rt, ns, query)
            for item in result["items"]:
                md = item["metadata"]
                try:
                    self.delete(rt, md.get("namespace", ""), md["name"], options, dry_run)
                except ApiError:
                    pass
            return result

    def list(self, rt, ns, query):
        """A typed list; query is the parsed query (dict of first values)."""
        label_match = parse_label_selector(query.get("labelSelector", ""))
        field_match, _ = parse_field_selector(query.get("fieldSelector", ""), rt)
        limit = query.get("limit", "")
        try:
            limit = int(limit) if limit else 0
        except ValueError:
            raise bad_request("invalid limit %r" % limit)
        with self.store.cond:
            list_rv = self.store.rv
            rv_param = query.get("resourceVersion", "")
            match = query.get("resourceVersionMatch", "")
            if rv_param and not rv_param.isdigit():
                raise bad_request("invalid resource version %r" % rv_param)
            if match and not rv_param:
                raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is "
                                  "provided")
            if match == "Exact" and int(rv_param) != list_rv:
                if int(rv_param) < self.store.compacted_rv:
                    raise ApiError(410, "The resourceVersion for the provided list is too old.",
                                   "Expired")
                # The fake keeps no old snapshots; any other exact version is served as now.
            start = None
            token = query.get("continue", "")
            if token:
                if rv_param:
                    raise bad_request("specifying resource version is not allowed when using "
                                      "continue")
                list_rv, start = _decode_continue(token)
                if list_rv < self.store.compacted_rv:
                    raise ApiError(410, "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without the "
                                   "continue parameter, or use the continue token in this "
                                   "response to retrieve the remainder of the results. "
                                   "Continuing with the provided token results in an "
                                   "inconsistent list - objects that were created, modified, or "
                                   "deleted between the time the first chunk was returned and "
                                   "now may show up in the list.", "Expired")
            items = []
            for obj in self.store.items(rt.key, ns or None):
                md = obj["metadata"]
                key = (md.get("namespace", ""), md["name"])
                if start is not None and key <= start:
                    continue
                if label_match(md.get("labels")) and field_match(obj):
                    items.append(obj)
        meta = {"resourceVersion": str(list_rv)}
        if limit > 0 and len(items) > limit:
            rest = len(items) - limit
            items = items[:limit]
            last = items[-1]["metadata"]
            meta["continue"] = _encode_continue(list_rv, (last.get("namespace", ""),
                                                          last["name"]))
            meta["remainingItemCount"] = rest
        if rt.builtin:
            # Items of a built-in type's list carry no kind/apiVersion on the real wire (custom
            # resources' items do); watch events always carry them.
            items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")}
                     for o in items]
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta,
                "items": items}
