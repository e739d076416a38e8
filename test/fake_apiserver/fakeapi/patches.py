"""PATCH bodies: JSON merge patch (RFC 7386), a strategic merge patch covering the list merge
keys of the fields the tests and kubectl touch, and JSON patch (RFC 6902)."""

import copy

from .status import ApiError, bad_request

# Lists merged by key in a strategic merge patch (the `patchMergeKey` of the Kubernetes types);
# every other list is replaced. Keyed by the field name, which is unambiguous for the types the
# fake serves except for the top-level fields in ATOMIC_TOP_LEVEL.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "ports": "containerPort",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "podIPs": "ip",
    "secrets": "name",
}
# Primitive lists merged as sets.
MERGE_PRIMITIVES = {"finalizers"}
# Top-level lists of a kind that are replaced although the same field name is merged elsewhere
# (PodSpec.imagePullSecrets merges by name, ServiceAccount.imagePullSecrets has no strategy).
ATOMIC_TOP_LEVEL = {"ServiceAccount": {"imagePullSecrets"}}


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target, patch, kind=None):
    """`kind` (the object's kind, at the top level only) selects ATOMIC_TOP_LEVEL."""
    atomic = ATOMIC_TOP_LEVEL.get(kind, ())
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(out.get(field), list) and isinstance(value, list):
                out[field] = [v for v in out[field] if v not in value]
            continue
        if value is None:
            out.pop(key, None)
        elif (isinstance(value, list) and key in MERGE_KEYS and key not in atomic
              and isinstance(out.get(key), list)):
            out[key] = _merge_list(out[key], value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in MERGE_PRIMITIVES and isinstance(out.get(key), list):
            out[key] = out[key] + [v for v in value if v not in out[key]]
        elif isinstance(value, dict):
            merged = strategic_merge_patch(out.get(key), value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_list(current, patch, key):
    out = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            # A list item without its merge key: the real server rejects it; replacing the list
            # would silently drop entries, so refuse too.
            raise bad_request("map: %s does not contain declared merge key: %s" % (item, key))
        idx = next((i for i, cur in enumerate(out)
                    if isinstance(cur, dict) and cur.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            out.append({k: v for k, v in item.items() if k != "$patch"})
        else:
            out[idx] = strategic_merge_patch(out[idx], item)
    return out


def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request("invalid JSON pointer %r" % path)
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc, parts):
    cur = doc
    for p in parts:
        if isinstance(cur, list):
            try:
                cur = cur[int(p)]
            except (ValueError, IndexError):
                raise ApiError(422, "the server rejected our request due to an error in our "
                               "request: path %s not found" % "/".join(parts))
        elif isinstance(cur, dict) and p in cur:
            cur = cur[p]
        else:
            raise ApiError(422, "the server rejected our request due to an error in our request: "
                           "doc is missing path: /%s" % "/".join(parts))
    return cur


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request("invalid JSON patch operation %r" % (op,))
        parts = _pointer(op["path"])
        kind = op["op"]
        if kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise ApiError(422, "the server rejected our request due to an error in our "
                               "request: testing value %s failed" % op["path"])
            continue
        value = op.get("value")
        if kind in ("move", "copy"):
            value = copy.deepcopy(_walk(doc, _pointer(op.get("from", ""))))
        if kind == "move":
            src = _pointer(op["from"])
            parent = _walk(doc, src[:-1])
            if isinstance(parent, list):
                del parent[int(src[-1])]
            else:
                del parent[src[-1]]
        if not parts:
            if kind == "remove":
                raise bad_request("cannot remove the document root")
            doc = value
            continue
        parent = _walk(doc, parts[:-1])
        last = parts[-1]
        if isinstance(parent, list):
            idx = len(parent) if last == "-" else int(last) if last.isdigit() else -1
            if idx < 0 or idx > len(parent) or (kind != "add" and idx >= len(parent)):
                raise ApiError(422, "the server rejected our request due to an error in our "
                               "request: index %s out of range" % last)
            if kind in ("add", "move", "copy"):
                parent.insert(idx, value)
            elif kind == "replace":
                parent[idx] = value
            elif kind == "remove":
                del parent[idx]
            else:
                raise bad_request("unknown JSON patch operation %r" % kind)
        elif isinstance(parent, dict):
            if kind in ("replace", "remove") and last not in parent:
                raise ApiError(422, "the server rejected our request due to an error in our "
                               "request: doc is missing key: %s" % op["path"])
            if kind in ("add", "replace", "move", "copy"):
                parent[last] = value
            elif kind == "remove":
                del parent[last]
            else:
                raise bad_request("unknown JSON patch operation %r" % kind)
        else:
            raise ApiError(422, "the server rejected our request due to an error in our request: "
                           "path %s is not a container" % op["path"])
    return doc
