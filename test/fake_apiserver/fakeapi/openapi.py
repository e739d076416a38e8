"""A minimal OpenAPI v3 (/openapi/v3 and /openapi/v3/<gv>) so kubectl apply's default
validation works. kubectl asks it one thing: whether the PATCH operation of a kind takes the
`fieldValidation` query parameter. When it does, kubectl skips client-side schema validation and
sends fieldValidation=Strict for the server to check (fakeapi/openapi_v2.py checks it). The
PATCH operations list only the non-strategic patch types, so kubectl does not compute strategic
merge patches from these schemas; it uses the /openapi/v2 definitions or its compiled-in types
(and JSON merge patches for custom resources). components.schemas carries the /openapi/v2
definitions of the group/version's kinds and what they refer to, for kubectl explain."""

import hashlib
import json

from . import openapi_v2


def _path_for(rt):
    prefix = "/api/v1" if not rt.group else "/apis/%s/%s" % (rt.group, rt.version)
    if rt.namespaced:
        return "%s/namespaces/{namespace}/%s/{name}" % (prefix, rt.plural)
    return "%s/%s/{name}" % (prefix, rt.plural)


def gv_document(registry, gv):
    paths = {}
    for rt in registry.by_gv.get(gv, []):
        if not rt.stored:
            continue
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        paths[_path_for(rt)] = {"patch": {
            "operationId": "patch" + rt.kind,
            "parameters": [{"name": "fieldValidation", "in": "query",
                            "schema": {"type": "string", "uniqueItems": True}},
                           {"name": "fieldManager", "in": "query",
                            "schema": {"type": "string", "uniqueItems": True}}],
            "requestBody": {"content": {
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/apply-patch+yaml": {"schema": {"type": "object"}}},
                "required": True},
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (fake)", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": _schemas(registry, gv)}}


def _schemas(registry, gv):
    """The /openapi/v2 definitions of this group/version's kinds and everything they refer
    to, with v3 references (kubectl explain reads them)."""
    defs = openapi_v2.document(registry, [gv])["definitions"]
    todo = [name for name, sch in defs.items()
            if sch.get("x-kubernetes-group-version-kind")]
    out = {}
    while todo:
        name = todo.pop()
        if name in out:
            continue
        text = json.dumps(defs[name]).replace('"#/definitions/', '"#/components/schemas/')
        out[name] = json.loads(text)
        todo += [ref.split('"')[0] for ref in text.split('"#/components/schemas/')[1:]]
    return out


def _rel(gv):
    return "api/v1" if gv == "v1" else "apis/" + gv


def root_document(registry, enabled):
    paths = {}
    for gv in enabled:
        doc = json.dumps(gv_document(registry, gv), sort_keys=True).encode()
        digest = hashlib.sha512(doc).hexdigest()[:64].upper()
        paths[_rel(gv)] = {"serverRelativeURL": "/openapi/v3/%s?hash=%s" % (_rel(gv), digest)}
    return {"paths": paths}


def lookup(registry, enabled, rel):
    """The document for /openapi/v3/<rel>, or None."""
    for gv in enabled:
        if _rel(gv) == rel:
            return gv_document(registry, gv)
    return None
