"""/openapi/v2: the Swagger 2.0 document older kubectl (v1.20, Debian 12's kubernetes-client)
reads before `apply`, `create -f` and `explain`: for client-side validation of each object
against the definition whose `x-kubernetes-group-version-kind` names its kind, and for the
strategic merge patch metadata (`x-kubernetes-patch-merge-key`/`-strategy`) of apply.

Served as JSON, or in the gnostic protobuf encoding (message openapi.v2.Document of
github.com/google/gnostic openapiv2/OpenAPIv2.proto) when the Accept header asks for
`application/com.github.proto-openapi.spec.v2@v1.0+protobuf` (or the newer `.v1.0` spelling),
as the real server does; kubectl asks for protobuf only.

Only kinds whose definition can be complete are published with their group/version/kind, since
kubectl rejects any field a definition does not list and computes apply patches from it:
ObjectMeta, Namespace, ServiceAccount, Secret, ConfigMap and the RBAC kinds (field lists of the
Kubernetes v1.32 API), and the inference custom resources as a CRD with
`x-kubernetes-preserve-unknown-fields` on spec and status publishes them (top-level fields
checked, spec and status free). Pod, Node and the review kinds are left out: for a kind
without a definition kubectl skips client-side validation and builds apply patches from its
compiled-in types, the same requests it sends a real cluster. `paths` lists the PATCH
operation of each kind (see _paths); the other operations are not described."""

import hashlib
import json

# Media types of the protobuf encoding (the first is what kubectl <= 1.26 sends).
PROTO_TYPES = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
               "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
JSON_TYPE = "application/json"

META = "io.k8s.apimachinery.pkg.apis.meta.v1."
CORE = "io.k8s.api.core.v1."
RBAC = "io.k8s.api.rbac.v1."


def _s(fmt=None):
    out = {"type": "string"}
    if fmt:
        out["format"] = fmt
    return out


def _i64():
    return {"type": "integer", "format": "int64"}


def _bool():
    return {"type": "boolean"}


def _ref(name):
    return {"$ref": "#/definitions/" + name}


def _arr(items, merge_key=None, strategy=None):
    out = {"type": "array", "items": items}
    if merge_key:
        out["x-kubernetes-patch-merge-key"] = merge_key
    if strategy:
        out["x-kubernetes-patch-strategy"] = strategy
    return out


def _map(values):
    return {"type": "object", "additionalProperties": values}


def _obj(props, required=()):
    out = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def _strings():
    return _arr(_s())


def _top(group, version, kind, props, required=()):
    """A kind's definition: apiVersion, kind, metadata and its own fields."""
    full = {"apiVersion": _s(), "kind": _s(), "metadata": _ref(META + "ObjectMeta")}
    full.update(props)
    out = _obj(full, required)
    out["x-kubernetes-group-version-kind"] = [{"group": group, "kind": kind,
                                               "version": version}]
    return out


def _common():
    rules = _arr(_ref(RBAC + "PolicyRule"))
    subjects = _arr(_ref(RBAC + "Subject"))
    return {
        META + "Time": _s("date-time"),
        META + "FieldsV1": {"type": "object"},
        META + "ManagedFieldsEntry": _obj({
            "apiVersion": _s(), "fieldsType": _s(), "fieldsV1": _ref(META + "FieldsV1"),
            "manager": _s(), "operation": _s(), "subresource": _s(),
            "time": _ref(META + "Time")}),
        META + "OwnerReference": _obj({
            "apiVersion": _s(), "blockOwnerDeletion": _bool(), "controller": _bool(),
            "kind": _s(), "name": _s(), "uid": _s()}, ["apiVersion", "kind", "name", "uid"]),
        META + "ObjectMeta": _obj({
            "annotations": _map(_s()), "creationTimestamp": _ref(META + "Time"),
            "deletionGracePeriodSeconds": _i64(), "deletionTimestamp": _ref(META + "Time"),
            "finalizers": _arr(_s(), strategy="merge"), "generateName": _s(),
            "generation": _i64(), "labels": _map(_s()),
            "managedFields": _arr(_ref(META + "ManagedFieldsEntry")), "name": _s(),
            "namespace": _s(),
            "ownerReferences": _arr(_ref(META + "OwnerReference"), "uid", "merge"),
            "resourceVersion": _s(), "selfLink": _s(), "uid": _s()}),
        META + "LabelSelectorRequirement": _obj({
            "key": _s(), "operator": _s(), "values": _strings()}, ["key", "operator"]),
        META + "LabelSelector": _obj({
            "matchExpressions": _arr(_ref(META + "LabelSelectorRequirement")),
            "matchLabels": _map(_s())}),
        CORE + "NamespaceSpec": _obj({"finalizers": _strings()}),
        CORE + "NamespaceCondition": _obj({
            "lastTransitionTime": _ref(META + "Time"), "message": _s(), "reason": _s(),
            "status": _s(), "type": _s()}, ["type", "status"]),
        CORE + "NamespaceStatus": _obj({
            "conditions": _arr(_ref(CORE + "NamespaceCondition"), "type", "merge"),
            "phase": _s()}),
        CORE + "Namespace": _top("", "v1", "Namespace", {
            "spec": _ref(CORE + "NamespaceSpec"), "status": _ref(CORE + "NamespaceStatus")}),
        CORE + "LocalObjectReference": _obj({"name": _s()}),
        CORE + "ObjectReference": _obj({
            "apiVersion": _s(), "fieldPath": _s(), "kind": _s(), "name": _s(),
            "namespace": _s(), "resourceVersion": _s(), "uid": _s()}),
        CORE + "ServiceAccount": _top("", "v1", "ServiceAccount", {
            "automountServiceAccountToken": _bool(),
            "imagePullSecrets": _arr(_ref(CORE + "LocalObjectReference")),
            "secrets": _arr(_ref(CORE + "ObjectReference"), "name", "merge")}),
        CORE + "Secret": _top("", "v1", "Secret", {
            "data": _map(_s("byte")), "immutable": _bool(), "stringData": _map(_s()),
            "type": _s()}),
        CORE + "ConfigMap": _top("", "v1", "ConfigMap", {
            "binaryData": _map(_s("byte")), "data": _map(_s()), "immutable": _bool()}),
        RBAC + "PolicyRule": _obj({
            "apiGroups": _strings(), "nonResourceURLs": _strings(),
            "resourceNames": _strings(), "resources": _strings(), "verbs": _strings()},
            ["verbs"]),
        RBAC + "AggregationRule": _obj({
            "clusterRoleSelectors": _arr(_ref(META + "LabelSelector"))}),
        RBAC + "RoleRef": _obj({"apiGroup": _s(), "kind": _s(), "name": _s()},
                               ["apiGroup", "kind", "name"]),
        RBAC + "Subject": _obj({"apiGroup": _s(), "kind": _s(), "name": _s(),
                                "namespace": _s()}, ["kind", "name"]),
        RBAC + "ClusterRole": _top("rbac.authorization.k8s.io", "v1", "ClusterRole", {
            "aggregationRule": _ref(RBAC + "AggregationRule"), "rules": rules}),
        RBAC + "Role": _top("rbac.authorization.k8s.io", "v1", "Role", {"rules": rules}),
        RBAC + "ClusterRoleBinding": _top(
            "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding",
            {"roleRef": _ref(RBAC + "RoleRef"), "subjects": subjects}, ["roleRef"]),
        RBAC + "RoleBinding": _top(
            "rbac.authorization.k8s.io", "v1", "RoleBinding",
            {"roleRef": _ref(RBAC + "RoleRef"), "subjects": subjects}, ["roleRef"]),
    }


def _crd_name(rt):
    # A CRD's definition name: the group reversed, then version and kind.
    return ".".join(reversed(rt.group.split("."))) + "." + rt.version + "." + rt.kind


def _item_path(rt):
    prefix = "/api/v1" if not rt.group else "/apis/%s/%s" % (rt.group, rt.version)
    if rt.namespaced:
        return "%s/namespaces/{namespace}/%s/{name}" % (prefix, rt.plural)
    return "%s/%s/{name}" % (prefix, rt.plural)


def _query_param(name, type_, description):
    return {"name": name, "in": "query", "type": type_, "uniqueItems": True,
            "description": description}


def _paths(registry, enabled):
    """The PATCH operation of each stored kind, with the query parameters the fake honours:
    kubectl v1.20 decides whether a kind supports server-side dry run (`kubectl diff`,
    `apply --dry-run=server`) by finding its PATCH operation here with a `dryRun` parameter."""
    paths = {}
    for rt in registry.types:
        if not rt.stored or rt.gv not in enabled:
            continue
        paths[_item_path(rt)] = {"patch": {
            "operationId": "patch" + rt.kind,
            "consumes": ["application/json-patch+json", "application/merge-patch+json",
                         "application/strategic-merge-patch+json", "application/apply-patch+yaml"]
            if rt.builtin else ["application/json-patch+json", "application/merge-patch+json",
                                "application/apply-patch+yaml"],
            "produces": ["application/json"],
            "parameters": [
                _query_param("dryRun", "string", "All: validate, do not persist"),
                _query_param("fieldManager", "string", "the actor making the change"),
                _query_param("fieldValidation", "string", "Ignore, Warn or Strict"),
                _query_param("force", "boolean", "server-side apply: take over conflicts")],
            "responses": {"200": {"description": "OK"}, "201": {"description": "Created"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": rt.group, "kind": rt.kind,
                                                "version": rt.version}}}
    return paths


def document(registry, enabled):
    """The Swagger 2.0 document (a dict) for the group/versions served now."""
    defs = {}
    common = _common()
    for name, schema in common.items():
        gvk = schema.get("x-kubernetes-group-version-kind")
        if gvk:
            g, v = gvk[0]["group"], gvk[0]["version"]
            if (v if not g else g + "/" + v) not in enabled:
                continue
        defs[name] = schema
    free = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    for rt in registry.types:
        if rt.builtin or not rt.stored or rt.gv not in enabled:
            continue
        defs[_crd_name(rt)] = _top(rt.group, rt.version, rt.kind, {"spec": free, "status": free})
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": _paths(registry, enabled), "definitions": defs}


# ---- the gnostic protobuf encoding ----


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(num, payload):
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _str(num, s):
    return _len_field(num, s.encode("utf-8"))


def _named(num, name, value_bytes):
    # NamedSchema / NamedPathItem / NamedAny: name = 1, value = 2.
    return _len_field(num, _str(1, name) + _len_field(2, value_bytes))


def _any(value):
    # openapi.v2.Any: yaml = 2. JSON is YAML, so the value is carried as its JSON text.
    return _str(2, json.dumps(value, sort_keys=True))


def encode_schema(schema):
    """openapi.v2.Schema for a JSON schema dict; a key the encoder does not know is an error
    (nothing of the JSON document is silently lost in the protobuf one)."""
    out = b""
    for key in ("$ref", "format", "description"):
        if key in schema:
            out += _str({"$ref": 1, "format": 2, "description": 4}[key], schema[key])
    for req in schema.get("required", ()):
        out += _str(19, req)
    if "additionalProperties" in schema:
        ap = schema["additionalProperties"]
        if isinstance(ap, bool):
            item = _varint(2 << 3 | 0) + _varint(int(ap))
        else:
            item = _len_field(1, encode_schema(ap))
        out += _len_field(21, item)
    if "type" in schema:
        out += _len_field(22, _str(1, schema["type"]))  # TypeItem.value
    if "items" in schema:
        out += _len_field(23, _len_field(1, encode_schema(schema["items"])))  # ItemsItem.schema
    if "properties" in schema:
        props = b"".join(_named(1, k, encode_schema(v))
                         for k, v in sorted(schema["properties"].items()))
        out += _len_field(25, props)
    known = {"$ref", "format", "description", "required", "additionalProperties", "type",
             "items", "properties"}
    for key in sorted(schema):
        if key.startswith("x-"):
            out += _named(31, key, _any(schema[key]))  # vendor_extension
        elif key not in known:
            raise ValueError("openapi v2 encoder: unsupported schema key %r" % key)
    return out


def _bool_field(num, value):
    return _varint(num << 3) + _varint(int(value)) if value else b""


def _encode_parameter(p):
    if p.get("in") != "query":
        raise ValueError("openapi v2 encoder: only query parameters are encoded")
    # QueryParameterSubSchema: in = 2, description = 3, name = 4, type = 6, unique_items = 20.
    sub = (_str(2, p["in"]) + _str(3, p["description"]) + _str(4, p["name"]) +
           _str(6, p["type"]) + _bool_field(20, p.get("uniqueItems")))
    # ParametersItem.parameter = 1 -> Parameter.non_body_parameter = 2 ->
    # NonBodyParameter.query_parameter_sub_schema = 3.
    return _len_field(1, _len_field(2, _len_field(3, sub)))


def _encode_operation(op):
    # Operation: produces = 6, consumes = 7, operation_id = 5, parameters = 8, responses = 9,
    # vendor_extension = 13.
    out = _str(5, op["operationId"])
    out += b"".join(_str(6, m) for m in op["produces"])
    out += b"".join(_str(7, m) for m in op["consumes"])
    out += b"".join(_len_field(8, _encode_parameter(p)) for p in op["parameters"])
    # Responses.response_code = 1 (NamedResponseValue) -> ResponseValue.response = 1 ->
    # Response.description = 1.
    codes = b"".join(_named(1, code, _len_field(1, _str(1, r["description"])))
                     for code, r in sorted(op["responses"].items()))
    out += _len_field(9, codes)
    for key in sorted(op):
        if key.startswith("x-"):
            out += _named(13, key, _any(op[key]))
        elif key not in ("operationId", "produces", "consumes", "parameters", "responses"):
            raise ValueError("openapi v2 encoder: unsupported operation key %r" % key)
    return out


def encode_document(doc):
    out = _str(1, doc["swagger"])
    out += _len_field(2, _str(1, doc["info"]["title"]) + _str(2, doc["info"]["version"]))
    # Paths.path = 2 (NamedPathItem); PathItem.patch = 8.
    items = b""
    for path, item in sorted(doc["paths"].items()):
        if set(item) != {"patch"}:
            raise ValueError("openapi v2 encoder: only PATCH operations are encoded")
        items += _named(2, path, _len_field(8, _encode_operation(item["patch"])))
    out += _len_field(8, items)
    defs = b"".join(_named(1, k, encode_schema(v)) for k, v in sorted(doc["definitions"].items()))
    out += _len_field(9, defs)
    return out


def negotiate(accept):
    """The media type to answer an Accept header with, or None (406). No header, */* and
    application/json (or application/*) get JSON."""
    if not accept or not accept.strip():
        return JSON_TYPE
    ranges = []
    for i, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        q = 1.0
        for f in fields[1:]:
            if f.startswith("q="):
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 0.0
        ranges.append((-q, i, fields[0].lower()))
    for negq, _, mt in sorted(ranges):
        if negq == 0:
            continue
        if mt in PROTO_TYPES:
            return mt
        if mt in (JSON_TYPE, "application/*", "*/*"):
            return JSON_TYPE
    return None


def response(registry, enabled, accept):
    """(Content-Type, body bytes, etag) for GET /openapi/v2, or None when nothing is
    acceptable. The real server answers through Go's http.ServeContent, which labels the
    protobuf body by sniffing it: application/octet-stream. (The requested media type with its
    "@" is no valid Content-Type: client-go's mime parsing rejects it.)"""
    mt = negotiate(accept)
    if mt is None:
        return None
    doc = document(registry, enabled)
    if mt == JSON_TYPE:
        body, ctype = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode(), mt
    else:
        body, ctype = encode_document(doc), "application/octet-stream"
    etag = '"%s"' % hashlib.sha512(body).hexdigest().upper()
    return ctype, body, etag


# ---- fieldValidation=Strict with the same definitions ----


def _definition_for(defs, rt):
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            if (gvk["group"], gvk["version"], gvk["kind"]) == (rt.group, rt.version, rt.kind):
                return schema
    return None


def _unknown(defs, schema, value, path, out):
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[1]]
    if value is None:
        return  # a merge patch's "delete this field"
    if "properties" in schema and isinstance(value, dict):
        for key in sorted(value):
            if key.startswith("$"):
                continue  # strategic merge patch directives ($patch, $setElementOrder/x, ...)
            sub = schema["properties"].get(key)
            if sub is None:
                out.append(path + key)
            else:
                _unknown(defs, sub, value[key], path + key + ".", out)
    elif "items" in schema and isinstance(value, list):
        for i, item in enumerate(value):
            _unknown(defs, schema["items"], item, "%s[%d]." % (path[:-1], i)
                     if path else "[%d]." % i, out)
    elif isinstance(schema.get("additionalProperties"), dict) and isinstance(value, dict):
        for key in sorted(value):
            _unknown(defs, schema["additionalProperties"], value[key], path + key + ".", out)


def unknown_fields(registry, rt, body):
    """Paths of the fields in a request body (an object, or a merge / strategic merge patch)
    that the kind's definition does not list: what the real server's fieldValidation=Strict
    rejects. Kinds without a definition (Pod, Node) and JSON patches are not checked."""
    if not isinstance(body, dict):
        return []
    defs = document(registry, registry.group_versions())["definitions"]
    schema = _definition_for(defs, rt)
    if schema is None:
        return []
    out = []
    _unknown(defs, schema, body, "", out)
    return out
