"""Request bodies in the Kubernetes protobuf encoding, for the kinds kubectl's typed commands
send that way (`kubectl create namespace|serviceaccount|secret|configmap|clusterrole|
clusterrolebinding|role|rolebinding`, `kubectl auth can-i`). Responses stay JSON, which those
clients accept too.

The envelope is the 4-byte magic "k8s\\0" and a runtime.Unknown message (typeMeta = 1 with
apiVersion = 1 and kind = 2; raw = 2 holding the object's own message). Field numbers are those
of the Kubernetes generated.proto files; fields the fake does not list are skipped."""

import base64

from .status import ApiError

MAGIC = b"k8s\x00"

_META = ("metadata", "ObjectMeta")
# message name -> {field number: (json name, type)}; a type is a scalar ("str", "bool", "int"),
# a message name, "map" (string->string), "mapbytes" (string->bytes, base64 in JSON), and
# "r:"-prefixed for repeated fields.
SCHEMAS = {
    "ObjectMeta": {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"),
                   11: ("labels", "map"), 12: ("annotations", "map"),
                   14: ("finalizers", "r:str")},
    "Namespace": {1: _META, 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "r:str")},
    "ServiceAccount": {1: _META, 2: ("secrets", "r:ObjectReference"),
                       3: ("imagePullSecrets", "r:LocalObjectReference"),
                       4: ("automountServiceAccountToken", "bool")},
    "ObjectReference": {1: ("kind", "str"), 2: ("namespace", "str"), 3: ("name", "str"),
                        4: ("uid", "str"), 5: ("apiVersion", "str")},
    "LocalObjectReference": {1: ("name", "str")},
    "Secret": {1: _META, 2: ("data", "mapbytes"), 3: ("type", "str"), 4: ("stringData", "map"),
               5: ("immutable", "bool")},
    "ConfigMap": {1: _META, 2: ("data", "map"), 3: ("binaryData", "mapbytes"),
                  4: ("immutable", "bool")},
    "ClusterRole": {1: _META, 2: ("rules", "r:PolicyRule")},
    "Role": {1: _META, 2: ("rules", "r:PolicyRule")},
    "PolicyRule": {1: ("verbs", "r:str"), 2: ("apiGroups", "r:str"), 3: ("resources", "r:str"),
                   4: ("resourceNames", "r:str"), 5: ("nonResourceURLs", "r:str")},
    "ClusterRoleBinding": {1: _META, 2: ("subjects", "r:Subject"), 3: ("roleRef", "RoleRef")},
    "RoleBinding": {1: _META, 2: ("subjects", "r:Subject"), 3: ("roleRef", "RoleRef")},
    "Subject": {1: ("kind", "str"), 2: ("apiGroup", "str"), 3: ("name", "str"),
                4: ("namespace", "str")},
    "RoleRef": {1: ("apiGroup", "str"), 2: ("kind", "str"), 3: ("name", "str")},
    "SelfSubjectAccessReview": {1: _META, 2: ("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes"),
                                    2: ("nonResourceAttributes", "NonResourceAttributes")},
    "ResourceAttributes": {1: ("namespace", "str"), 2: ("verb", "str"), 3: ("group", "str"),
                           4: ("version", "str"), 5: ("resource", "str"),
                           6: ("subresource", "str"), 7: ("name", "str")},
    "NonResourceAttributes": {1: ("path", "str"), 2: ("verb", "str")},
    "TokenReview": {1: _META, 2: ("spec", "TokenReviewSpec")},
    "TokenReviewSpec": {1: ("token", "str"), 2: ("audiences", "r:str")},
    "TypeMeta": {1: ("apiVersion", "str"), 2: ("kind", "str")},
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "bytes"), 3: ("contentEncoding", "str"),
                4: ("contentType", "str")},
    "MapEntry": {1: ("key", "str"), 2: ("value", "bytes")},
}


def _bad(msg):
    return ApiError(400, "the protobuf body could not be decoded: " + msg, "BadRequest")


def _varint(buf, i):
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise _bad("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf):
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise _bad("truncated field %d" % num)
            value, i = buf[i:i + n], i + n
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise _bad("unsupported wire type %d" % wire)
        yield num, wire, value


def _scalar(kind, wire, value):
    if kind in ("str", "bytes"):
        if wire != 2:
            raise _bad("expected a length-delimited field")
        if kind == "bytes":
            return bytes(value)
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("invalid UTF-8 in a string field")
    if kind == "bool":
        return bool(value)
    if kind == "int":
        return value
    return decode_message(kind, value)


def decode_message(name, buf):
    schema = SCHEMAS[name]
    out = {}
    for num, wire, value in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            continue
        field, kind = spec
        if kind in ("map", "mapbytes"):
            entry = decode_message("MapEntry", value)
            raw = entry.get("value", b"")
            if kind == "map":
                try:
                    v = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _bad("invalid UTF-8 in map value")
            else:
                v = base64.b64encode(raw).decode()
            out.setdefault(field, {})[entry.get("key", "")] = v
        elif kind.startswith("r:"):
            out.setdefault(field, []).append(_scalar(kind[2:], wire, value))
        else:
            v = _scalar(kind, wire, value)
            # gogo-protobuf writes empty optional strings and false bools; the JSON encoding
            # omits them (omitempty), so drop them to get the object the real server stores.
            if v == "" or v is False:
                out.pop(field, None)
            else:
                out[field] = v
    return out


def decode(raw):
    """A JSON-shaped dict for a protobuf request body; ApiError 415 for kinds it cannot read."""
    if not raw.startswith(MAGIC):
        raise _bad("missing the k8s protobuf magic prefix")
    unknown = decode_message("Unknown", raw[len(MAGIC):])
    tm = unknown.get("typeMeta") or {}
    kind = tm.get("kind", "")
    if kind not in SCHEMAS or kind in ("Unknown", "TypeMeta", "MapEntry"):
        raise ApiError(415, "the fake API server decodes protobuf bodies only for %s; send "
                       "application/json for %s" % (", ".join(sorted(
                           k for k in SCHEMAS if k[0].isupper() and SCHEMAS[k].get(1) == _META)),
                           kind or "this object"), "UnsupportedMediaType")
    obj = {"apiVersion": tm.get("apiVersion", ""), "kind": kind}
    obj.update(decode_message(kind, unknown.get("raw", b"")))
    return obj
