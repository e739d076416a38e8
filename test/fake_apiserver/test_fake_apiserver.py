"""Wire semantics of the fake API server: what infertap's Kubernetes client relies on."""

import base64
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakeapi_testlib import SCRIPT, FakeServer, pod, read_text  # noqa: E402

POOLS_V1 = "/apis/inference.networking.k8s.io/v1"
POOLS_X = "/apis/inference.networking.x-k8s.io/v1alpha2"


def pb_fields(buf):
    """(field number, wire type, value) of one protobuf message; varints and length-delimited
    fields only (all the gnostic OpenAPI v2 document uses)."""
    out, i = [], 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            b = buf[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(buf):
        key = varint()
        if key & 7 == 0:
            out.append((key >> 3, 0, varint()))
        elif key & 7 == 2:
            n = varint()
            out.append((key >> 3, 2, buf[i:i + n]))
            i += n
        else:
            raise AssertionError("unexpected wire type %d" % (key & 7))
    return out


def pb_named(buf):
    # NamedSchema / NamedAny: name = 1, value = 2.
    f = {num: v for num, _, v in pb_fields(buf)}
    return f[1].decode(), f.get(2, b"")


def pb_schema(buf):
    """openapi.v2.Schema (gnostic OpenAPIv2.proto field numbers) back to its JSON form."""
    out = {}
    for num, wire, v in pb_fields(buf):
        if num == 1:
            out["$ref"] = v.decode()
        elif num == 2:
            out["format"] = v.decode()
        elif num == 19:
            out.setdefault("required", []).append(v.decode())
        elif num == 21:
            (sub_num, _, sub), = pb_fields(v)
            out["additionalProperties"] = pb_schema(sub) if sub_num == 1 else bool(sub)
        elif num == 22:
            values = [t.decode() for n, _, t in pb_fields(v) if n == 1]
            assert len(values) == 1, values
            out["type"] = values[0]
        elif num == 23:
            (_, _, item), = pb_fields(v)
            out["items"] = pb_schema(item)
        elif num == 25:
            out["properties"] = dict((k, pb_schema(sv)) for k, sv in
                                     (pb_named(e) for n, _, e in pb_fields(v) if n == 1))
        elif num == 31:
            name, anyv = pb_named(v)
            yaml = {n: t for n, _, t in pb_fields(anyv)}[2].decode()
            out[name] = json.loads(yaml)  # the fake writes YAML in its JSON form
        else:
            raise AssertionError("unexpected Schema field %d" % num)
    return out


def pb_operation(buf):
    """openapi.v2.Operation (with query parameters only) back to its JSON form."""
    out = {}
    for num, _, v in pb_fields(buf):
        if num == 5:
            out["operationId"] = v.decode()
        elif num in (6, 7):
            out.setdefault("produces" if num == 6 else "consumes", []).append(v.decode())
        elif num == 8:
            # ParametersItem.parameter = 1 -> Parameter.non_body_parameter = 2 ->
            # NonBodyParameter.query_parameter_sub_schema = 3
            (_, _, par), = pb_fields(v)
            (_, _, nbp), = pb_fields(par)
            (qn, _, q), = pb_fields(nbp)
            assert qn == 3
            names = {2: "in", 3: "description", 4: "name", 6: "type", 20: "uniqueItems"}
            out.setdefault("parameters", []).append(
                {names[n]: (bool(x) if n == 20 else x.decode()) for n, _, x in pb_fields(q)})
        elif num == 9:
            out["responses"] = {}
            for _, _, nrv in pb_fields(v):
                code, rv = pb_named(nrv)
                (_, _, resp), = pb_fields(rv)
                out["responses"][code] = {"description": pb_fields(resp)[0][2].decode()}
        elif num == 13:
            name, anyv = pb_named(v)
            out[name] = json.loads({n: t for n, _, t in pb_fields(anyv)}[2].decode())
        else:
            raise AssertionError("unexpected Operation field %d" % num)
    return out


def names(lst):
    return [i["metadata"]["name"] for i in lst["items"]]


class Shared(unittest.TestCase):
    """One server for the tests that do not change its global behaviour."""

    @classmethod
    def setUpClass(cls):
        cls.s = FakeServer("--bookmark-interval", "0.3")

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()

    def create(self, path, obj, expect=201):
        r = self.s.request("POST", path, obj)
        self.assertEqual(r.status, expect, r.raw)
        return r.json

    def assertStatus(self, r, code, reason):
        self.assertEqual(r.status, code, r.raw)
        self.assertEqual(r.json["kind"], "Status")
        self.assertEqual(r.json["apiVersion"], "v1")
        self.assertEqual(r.json["status"], "Failure")
        self.assertEqual(r.json["code"], code)
        self.assertEqual(r.json["reason"], reason)

    # ---- files, discovery ----

    def test_files_and_kubeconfig(self):
        for f in ("ca.crt", "server.crt", "server.key", "client.crt", "client.key",
                  "admin.token", "kubeconfig", "kubeconfig-cert", "kubeconfig-files",
                  "kubeconfig-tokenfile", "ready", "control"):
            self.assertTrue(os.path.getsize(self.s.path(f)) > 0, f)
        kc = read_text(self.s.path("kubeconfig"))
        self.assertIn("server: " + self.s.url + "\n", kc)
        self.assertIn("token: " + self.s.token + "\n", kc)
        self.assertIn("current-context: fake\n", kc)
        self.assertIn("client-certificate-data: ", read_text(self.s.path("kubeconfig-cert")))
        self.assertTrue(self.s.url.startswith("https://127.0.0.1:"))
        san = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in",
                              self.s.path("server.crt")], capture_output=True, text=True).stdout
        for name in ("IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "DNS:localhost"):
            self.assertIn(name, san)

    def test_discovery(self):
        r = self.s.request("GET", "/api")
        self.assertEqual(r.json["kind"], "APIVersions")
        self.assertEqual(r.json["versions"], ["v1"])
        core = self.s.request("GET", "/api/v1").json
        self.assertEqual(core["kind"], "APIResourceList")
        self.assertEqual(core["groupVersion"], "v1")
        pods = [x for x in core["resources"] if x["name"] == "pods"][0]
        self.assertEqual(pods["kind"], "Pod")
        self.assertTrue(pods["namespaced"])
        self.assertEqual(pods["shortNames"], ["po"])
        self.assertEqual(pods["singularName"], "pod")
        self.assertIn("watch", pods["verbs"])
        self.assertIn("pods/status", [x["name"] for x in core["resources"]])
        groups = self.s.request("GET", "/apis").json
        self.assertEqual(groups["kind"], "APIGroupList")
        gvs = {v["groupVersion"] for g in groups["groups"] for v in g["versions"]}
        for gv in ("inference.networking.k8s.io/v1", "inference.networking.x-k8s.io/v1alpha2",
                   "authentication.k8s.io/v1", "authorization.k8s.io/v1",
                   "rbac.authorization.k8s.io/v1"):
            self.assertIn(gv, gvs)
        x = self.s.request("GET", POOLS_X).json
        kinds = {r["name"]: r["kind"] for r in x["resources"]}
        self.assertEqual(kinds["inferencepools"], "InferencePool")
        self.assertEqual(kinds["inferencemodels"], "InferenceModel")
        self.assertEqual(kinds["inferencemodelrewrites"], "InferenceModelRewrite")
        v1 = self.s.request("GET", POOLS_V1).json
        self.assertEqual(v1["groupVersion"], "inference.networking.k8s.io/v1")
        tr = self.s.request("GET", "/apis/authentication.k8s.io/v1").json
        self.assertEqual([(r["name"], r["verbs"]) for r in tr["resources"]],
                         [("tokenreviews", ["create"])])
        self.assertEqual(self.s.request("GET", "/version").json["major"], "1")

    def test_disable_group(self):
        self.s.control("POST", "disable-group", gv="inference.networking.x-k8s.io/v1alpha2")
        try:
            groups = self.s.request("GET", "/apis").json["groups"]
            self.assertNotIn("inference.networking.x-k8s.io", [g["name"] for g in groups])
            self.assertIn("inference.networking.k8s.io", [g["name"] for g in groups])
            r = self.s.request("GET", POOLS_X + "/inferencepools")
            self.assertStatus(r, 404, "NotFound")
            self.assertEqual(r.json["message"], "the server could not find the requested resource")
            self.assertStatus(self.s.request("GET", POOLS_X), 404, "NotFound")
            self.assertEqual(self.s.request("GET", POOLS_V1 + "/inferencepools").status, 200)
        finally:
            self.s.control("POST", "enable-group", gv="inference.networking.x-k8s.io/v1alpha2")
        self.assertEqual(self.s.request("GET", POOLS_X + "/inferencepools").status, 200)

    def test_openapi_v2(self):
        r = self.s.request("GET", "/openapi/v2")
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.headers["Content-Type"], "application/json")
        doc = r.json
        self.assertEqual(doc["swagger"], "2.0")
        defs = doc["definitions"]
        gvks = {}
        for name, schema in defs.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", ()):
                gvks[(gvk["group"], gvk["version"], gvk["kind"])] = name
            for ref in re.findall(r'"\$ref": "#/definitions/([^"]+)"', json.dumps(schema)):
                self.assertIn(ref, defs, name)  # every reference resolves
        self.assertEqual(gvks[("", "v1", "ServiceAccount")], "io.k8s.api.core.v1.ServiceAccount")
        self.assertEqual(gvks[("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding")],
                         "io.k8s.api.rbac.v1.ClusterRoleBinding")
        self.assertEqual(gvks[("inference.networking.k8s.io", "v1", "InferencePool")],
                         "io.k8s.networking.inference.v1.InferencePool")
        self.assertEqual(gvks[("inference.networking.x-k8s.io", "v1alpha2", "InferenceModel")],
                         "io.x-k8s.networking.inference.v1alpha2.InferenceModel")
        self.assertNotIn(("", "v1", "Pod"), gvks)  # no definition: kubectl skips validation
        # kubectl 1.20 looks for a kind's PATCH operation with a dryRun parameter before a
        # server-side dry run (kubectl diff).
        pods_path = "/api/v1/namespaces/{namespace}/pods/{name}"
        patch = doc["paths"][pods_path]["patch"]
        self.assertEqual(patch["x-kubernetes-group-version-kind"],
                         {"group": "", "kind": "Pod", "version": "v1"})
        self.assertIn("dryRun", [q["name"] for q in patch["parameters"]])
        self.assertIn("/apis/inference.networking.k8s.io/v1/namespaces/{namespace}/"
                      "inferencepools/{name}", doc["paths"])
        self.assertIn("/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}", doc["paths"])
        sa = defs["io.k8s.api.core.v1.ServiceAccount"]["properties"]
        self.assertEqual(sa["secrets"]["x-kubernetes-patch-merge-key"], "name")
        self.assertEqual(sa["metadata"],
                         {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"})
        # The gnostic protobuf encoding carries the same document.
        for mt in ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                   "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                   "application/json;q=0.5, application/com.github.proto-openapi.spec.v2"
                   ".v1.0+protobuf"):
            pb = self.s.request("GET", "/openapi/v2", headers={"Accept": mt})
            self.assertEqual(pb.status, 200, mt)
            self.assertEqual(pb.headers["Content-Type"], "application/octet-stream")
            top = pb_fields(pb.raw)
            self.assertEqual([n for n, _, _ in top], [1, 2, 8, 9])
            self.assertEqual(top[0][2], b"2.0")
            paths = dict(pb_named(v) for n, _, v in pb_fields(top[2][2]) if n == 2)
            self.assertEqual(sorted(paths), sorted(doc["paths"]))
            (num, _, op), = pb_fields(paths[pods_path])  # PathItem.patch = 8
            self.assertEqual(num, 8)
            self.assertEqual(pb_operation(op), doc["paths"][pods_path]["patch"])
            info = {n: v for n, _, v in pb_fields(top[1][2])}
            self.assertEqual(info[1], b"Kubernetes")
            decoded = dict(pb_named(v) for n, _, v in pb_fields(top[3][2]))
            self.assertEqual(sorted(decoded), sorted(defs))
            self.assertEqual({k: pb_schema(v) for k, v in decoded.items()}, defs)
        # Conditional requests and content negotiation, as the real server answers them.
        etag = r.headers["Etag"]
        self.assertRegex(etag, r'^"[0-9A-F]{128}"$')
        self.assertEqual(r.headers["Vary"], "Accept")
        again = self.s.request("GET", "/openapi/v2", headers={"If-None-Match": etag})
        self.assertEqual((again.status, again.raw), (304, b""))
        self.assertEqual(self.s.request("GET", "/openapi/v2",
                                        headers={"Accept": "*/*"}).json, doc)
        self.assertEqual(self.s.request("GET", "/openapi/v2",
                                        headers={"Accept": "text/html"}).status, 406)
        self.assertEqual(self.s.request("GET", "/openapi/v2", token=None).status, 401)
        self.assertIn("/openapi/v2", self.s.request("GET", "/").json["paths"])
        # A CRD that is not installed has no definition.
        self.s.control("POST", "disable-group", gv="inference.networking.x-k8s.io/v1alpha2")
        try:
            defs = self.s.request("GET", "/openapi/v2").json["definitions"]
            self.assertNotIn("io.x-k8s.networking.inference.v1alpha2.InferencePool", defs)
            self.assertIn("io.k8s.networking.inference.v1.InferencePool", defs)
        finally:
            self.s.control("POST", "enable-group", gv="inference.networking.x-k8s.io/v1alpha2")

    def test_openapi_v3_schemas(self):
        root = self.s.request("GET", "/openapi/v3").json["paths"]
        core = self.s.request("GET", root["api/v1"]["serverRelativeURL"]).json
        schemas = core["components"]["schemas"]
        sa = schemas["io.k8s.api.core.v1.ServiceAccount"]
        self.assertEqual(sa["x-kubernetes-group-version-kind"],
                         [{"group": "", "kind": "ServiceAccount", "version": "v1"}])
        self.assertEqual(sa["properties"]["metadata"]["$ref"],
                         "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
        text = json.dumps(core)
        self.assertNotIn("#/definitions/", text)
        for ref in re.findall(r'"#/components/schemas/([^"]+)"', text):
            self.assertIn(ref, schemas)  # every reference resolves within the document
        self.assertNotIn("io.k8s.api.rbac.v1.ClusterRole", schemas)  # other groups' kinds
        pools = self.s.request("GET", root["apis/inference.networking.k8s.io/v1"]
                               ["serverRelativeURL"]).json["components"]["schemas"]
        self.assertEqual(sorted(k for k, v in pools.items()
                                if "x-kubernetes-group-version-kind" in v),
                         ["io.k8s.networking.inference.v1.InferencePool"])

    def test_strict_field_validation(self):
        sa = {"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": "strict", "lables": {"a": "b"}}, "secretz": []}
        path = "/api/v1/namespaces/strict/serviceaccounts"
        r = self.s.request("POST", path + "?fieldValidation=Strict", sa)
        self.assertStatus(r, 400, "BadRequest")
        self.assertEqual(r.json["message"], 'ServiceAccount in version "v1" cannot be handled as '
                         'a ServiceAccount: strict decoding error: unknown field '
                         '"metadata.lables", unknown field "secretz"')
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "strict"}, "rules": [{"verbs": ["get"], "verbz": []}]}
        r = self.s.request("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles"
                           "?fieldValidation=Strict", role)
        self.assertStatus(r, 400, "BadRequest")
        self.assertIn('unknown field "rules[0].verbz"', r.json["message"])
        pool = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
                "metadata": {"name": "strict"}, "spek": {}, "spec": {"anything": 1}}
        r = self.s.request("POST", POOLS_V1 + "/namespaces/strict/inferencepools"
                           "?fieldValidation=Strict", pool)
        self.assertStatus(r, 400, "BadRequest")
        self.assertIn('strict decoding error: unknown field "spek"', r.json["message"])
        # Without Strict (Warn, Ignore, unset) the object is accepted as before.
        self.assertEqual(self.s.request("POST", path + "?fieldValidation=Ignore", sa).status, 201)
        # Patches: directives are not fields; an unknown field is refused.
        good = {"metadata": {"labels": {"x": "1"}}, "$setElementOrder/secrets": [{"name": "a"}],
                "secrets": [{"name": "a"}]}
        r = self.s.request("PATCH", path + "/strict?fieldValidation=Strict", good,
                           ctype="application/strategic-merge-patch+json")
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.json["secrets"], [{"name": "a"}])
        r = self.s.request("PATCH", path + "/strict?fieldValidation=Strict",
                           {"secrets": [{"nam": "b"}], "metadata": {"labels": None}},
                           ctype="application/merge-patch+json")
        self.assertStatus(r, 400, "BadRequest")
        self.assertIn('unknown field "secrets[0].nam"', r.json["message"])
        # Kinds without a definition (Pod) are not checked: a documented difference.
        self.assertEqual(self.s.request("POST", "/api/v1/namespaces/strict/pods"
                                        "?fieldValidation=Strict",
                                        dict(pod("strict", "strict"), extra=1)).status, 201)

    # ---- authentication ----

    def test_authentication(self):
        r = self.s.request("GET", "/api/v1/pods", token=None)
        self.assertStatus(r, 401, "Unauthorized")
        self.assertEqual(r.json["message"], "Unauthorized")
        self.assertStatus(self.s.request("GET", "/api/v1/pods", token="bogus"), 401,
                          "Unauthorized")
        self.assertStatus(self.s.request("GET", "/version", token=None), 401, "Unauthorized")
        ctx = ssl.create_default_context(cafile=self.s.path("ca.crt"))
        ctx.load_cert_chain(self.s.path("client.crt"), self.s.path("client.key"))
        r = self.s.request("GET", "/api/v1/pods", token=None, ctx=ctx)
        self.assertEqual(r.status, 200, r.raw)
        self.assertEqual(r.json["kind"], "PodList")
        # TLS is verified against the generated CA: a default context refuses the server.
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.s.request("GET", "/version", ctx=ssl.create_default_context())

    # ---- lists ----

    def test_list_field_selector(self):
        for i, node in enumerate(["n1", "n2", "n1"]):
            self.create("/api/v1/namespaces/sel/pods", pod("p%d" % i, "sel", node))
        r = self.s.request("GET", "/api/v1/namespaces/sel/pods?fieldSelector=spec.nodeName%3Dn1")
        self.assertEqual(r.json["kind"], "PodList")
        self.assertEqual(r.json["apiVersion"], "v1")
        self.assertTrue(r.json["metadata"]["resourceVersion"].isdigit())
        self.assertEqual(names(r.json), ["p0", "p2"])
        self.assertNotIn("kind", r.json["items"][0])  # built-in list items: no kind/apiVersion
        self.assertEqual(list(r.json["items"][0].keys())[0], "metadata")
        r = self.s.request("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn2,"
                           "metadata.namespace%3Dsel")
        self.assertEqual(names(r.json), ["p1"])
        r = self.s.request("GET", "/api/v1/pods?fieldSelector=spec.nodeName!%3Dn1,"
                           "metadata.namespace%3Dsel")
        self.assertEqual(names(r.json), ["p1"])
        r = self.s.request("GET", "/api/v1/pods?fieldSelector=metadata.name%3Dp2")
        self.assertEqual(names(r.json), ["p2"])
        r = self.s.request("GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx")
        self.assertStatus(r, 400, "BadRequest")
        self.assertEqual(r.json["message"], "field label not supported: spec.bogus")

    def test_label_selector(self):
        for name, labels in (("a", {"app": "vllm", "tier": "gpu"}), ("b", {"app": "vllm"}),
                             ("c", {"app": "sglang"}), ("d", {})):
            self.create("/api/v1/namespaces/lab/pods", pod(name, "lab", labels=labels))

        def sel(s):
            q = urllib.parse.urlencode({"labelSelector": s})
            return names(self.s.request("GET", "/api/v1/namespaces/lab/pods?" + q).json)

        self.assertEqual(sel("app=vllm"), ["a", "b"])
        self.assertEqual(sel("app==vllm,tier=gpu"), ["a"])
        self.assertEqual(sel("app!=vllm"), ["c", "d"])
        self.assertEqual(sel("app in (sglang, vllm),!tier"), ["b", "c"])
        self.assertEqual(sel("app notin (vllm)"), ["c", "d"])
        self.assertEqual(sel("tier"), ["a"])
        self.assertEqual(sel(""), ["a", "b", "c", "d"])
        r = self.s.request("GET", "/api/v1/namespaces/lab/pods?labelSelector=a%3D%3D%3Db")
        self.assertStatus(r, 400, "BadRequest")

    def test_pagination_and_expired_continue(self):
        for i in range(5):
            self.create("/api/v1/namespaces/page/pods", pod("q%d" % i, "page"))
        first = self.s.request("GET", "/api/v1/namespaces/page/pods?limit=2").json
        self.assertEqual(names(first), ["q0", "q1"])
        self.assertEqual(first["metadata"]["remainingItemCount"], 3)
        seen = names(first)
        token = first["metadata"]["continue"]
        while token:
            page = self.s.request("GET", "/api/v1/namespaces/page/pods?limit=2&continue="
                                  + urllib.parse.quote(token)).json
            self.assertLessEqual(len(page["items"]), 2)
            self.assertEqual(page["metadata"]["resourceVersion"],
                             first["metadata"]["resourceVersion"])
            seen += names(page)
            token = page["metadata"].get("continue")
        self.assertEqual(seen, ["q0", "q1", "q2", "q3", "q4"])
        self.create("/api/v1/namespaces/page/pods", pod("q5", "page"))
        self.s.control("POST", "compact")
        r = self.s.request("GET", "/api/v1/namespaces/page/pods?limit=2&continue="
                           + urllib.parse.quote(first["metadata"]["continue"]))
        self.assertStatus(r, 410, "Expired")

    # ---- watches ----

    def test_watch_event_sequence(self):
        lst = self.s.request("GET", "/api/v1/namespaces/w1/pods").json
        rv = lst["metadata"]["resourceVersion"]
        w = self.s.watch("/api/v1/namespaces/w1/pods?watch=1&resourceVersion=%s" % rv)
        self.assertEqual(w.status, 200)
        self.assertEqual(w.resp.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(w.resp.getheader("Content-Type"), "application/json")
        created = self.create("/api/v1/namespaces/w1/pods", pod("x", "w1"))
        self.assertEqual(created["status"]["phase"], "Pending")
        p = self.s.request("PATCH", "/api/v1/namespaces/w1/pods/x",
                           {"metadata": {"labels": {"pool": "a"}}},
                           ctype="application/merge-patch+json")
        self.assertEqual(p.status, 200, p.raw)
        st = self.s.request("PATCH", "/api/v1/namespaces/w1/pods/x/status",
                            {"status": {"phase": "Running", "podIP": "10.1.0.7", "conditions": [
                                {"type": "Ready", "status": "True"}]}},
                            ctype="application/strategic-merge-patch+json")
        self.assertEqual(st.json["status"]["podIP"], "10.1.0.7")
        d = self.s.request("DELETE", "/api/v1/namespaces/w1/pods/x")
        self.assertEqual(d.json["status"], "Success")
        evs = [w.next_event() for _ in range(4)]
        w.close()
        self.assertEqual([e["type"] for e in evs], ["ADDED", "MODIFIED", "MODIFIED", "DELETED"])
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
        self.assertEqual(rvs, sorted(rvs))
        self.assertGreater(rvs[0], int(rv))
        self.assertEqual(evs[1]["object"]["metadata"]["labels"], {"pool": "a"})
        self.assertEqual(evs[2]["object"]["status"]["podIP"], "10.1.0.7")
        self.assertEqual(evs[0]["object"]["kind"], "Pod")

    def test_watch_initial_events_and_bookmarks(self):
        self.create("/api/v1/namespaces/bm/pods", pod("b0", "bm"))
        w = self.s.watch("/api/v1/namespaces/bm/pods?watch=true&allowWatchBookmarks=true"
                         "&timeoutSeconds=5")
        first = w.next_event()
        self.assertEqual((first["type"], first["object"]["metadata"]["name"]), ("ADDED", "b0"))
        bm = w.events_until(lambda e: e["type"] == "BOOKMARK")[-1]
        w.close()
        self.assertEqual(bm["type"], "BOOKMARK")
        self.assertEqual(set(bm["object"].keys()), {"kind", "apiVersion", "metadata"})
        self.assertEqual(bm["object"]["kind"], "Pod")
        self.assertEqual(bm["object"]["apiVersion"], "v1")
        self.assertEqual(list(bm["object"]["metadata"].keys()),
                         ["resourceVersion", "creationTimestamp"])
        self.assertGreaterEqual(int(bm["object"]["metadata"]["resourceVersion"]),
                                int(first["object"]["metadata"]["resourceVersion"]))
        # sendInitialEvents: the end of the initial events is marked.
        w = self.s.watch("/api/v1/namespaces/bm/pods?watch=1&allowWatchBookmarks=true"
                         "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                         "&timeoutSeconds=3")
        evs = w.events_until(lambda e: e["type"] == "BOOKMARK")
        w.close()
        self.assertEqual([e["type"] for e in evs], ["ADDED", "BOOKMARK"])
        self.assertEqual(evs[1]["object"]["metadata"]["annotations"],
                         {"k8s.io/initial-events-end": "true"})

    def test_watch_without_bookmarks_gets_none(self):
        w = self.s.watch("/api/v1/namespaces/nobm/pods?watch=1&resourceVersion=%s&timeoutSeconds=1"
                         % self.rv())
        evs = w.events_until(lambda e: False)
        w.close()
        self.assertEqual(evs, [])

    def rv(self):
        return self.s.request("GET", "/api/v1/namespaces/zz/pods").json["metadata"][
            "resourceVersion"]

    def test_watch_expired_after_compact(self):
        old = self.rv()
        self.create("/api/v1/namespaces/cmp/pods", pod("c1", "cmp"))
        # Before compaction the old version is still in the history.
        w = self.s.watch("/api/v1/namespaces/cmp/pods?watch=1&resourceVersion=%s" % old)
        self.assertEqual(w.next_event()["type"], "ADDED")
        w.close()
        state = self.s.control("POST", "compact")
        self.assertGreater(int(state["compactedResourceVersion"]), int(old))
        w = self.s.watch("/api/v1/namespaces/cmp/pods?watch=1&resourceVersion=%s" % old)
        self.assertEqual(w.status, 200)
        ev = w.next_event()
        self.assertEqual(ev["type"], "ERROR")
        self.assertEqual(ev["object"]["kind"], "Status")
        self.assertEqual(ev["object"]["code"], 410)
        self.assertEqual(ev["object"]["reason"], "Expired")
        self.assertTrue(ev["object"]["message"].startswith("too old resource version: %s" % old))
        self.assertIsNone(w.next_event())  # the stream ends
        w.close()
        # Exact list at the old version is gone too; a plain list works.
        r = self.s.request("GET", "/api/v1/pods?resourceVersion=%s&resourceVersionMatch=Exact"
                           % old)
        self.assertStatus(r, 410, "Expired")
        self.assertEqual(self.s.request("GET", "/api/v1/pods?resourceVersion=%s" % old).status,
                         200)

    def test_injected_watch_error(self):
        w = self.s.watch("/api/v1/namespaces/inj/pods?watch=1&resourceVersion=%s" % self.rv())
        deadline = time.time() + 5
        while not any(x["path"].startswith("/api/v1/namespaces/inj/pods")
                      for x in self.s.control("GET", "watches")["watches"]):
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)
        self.assertGreaterEqual(self.s.control("POST", "watch-error", code="410")["watches"], 1)
        ev = w.next_event()
        self.assertEqual(ev["type"], "ERROR")
        self.assertEqual((ev["object"]["code"], ev["object"]["reason"]), (410, "Expired"))
        self.assertIsNone(w.next_event())  # then a clean end
        w.close()

    def test_watch_timeout_seconds(self):
        t0 = time.time()
        w = self.s.watch("/api/v1/namespaces/to/pods?watch=1&timeoutSeconds=1&resourceVersion=%s"
                         % self.rv())
        self.assertIsNone(w.next_event())
        elapsed = time.time() - t0
        w.close()
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 3.0)

    def test_watch_selector_transitions(self):
        self.create("/api/v1/namespaces/tr/pods", pod("t", "tr", labels={"app": "vllm"}))
        rv = self.rv()
        w = self.s.watch("/api/v1/namespaces/tr/pods?watch=1&labelSelector=app%%3Dvllm"
                         "&resourceVersion=%s" % rv)
        for labels in ({"app": "other"}, {"app": "vllm"}):
            self.s.request("PATCH", "/api/v1/namespaces/tr/pods/t",
                           {"metadata": {"labels": labels}}, ctype="application/merge-patch+json")
        # A pod not matching at all is never seen.
        self.create("/api/v1/namespaces/tr/pods", pod("u", "tr", labels={"app": "x"}))
        self.s.request("PATCH", "/api/v1/namespaces/tr/pods/t", {"metadata": {"labels": {
            "extra": "1"}}}, ctype="application/merge-patch+json")
        evs = [w.next_event() for _ in range(3)]
        w.close()
        self.assertEqual([e["type"] for e in evs], ["DELETED", "ADDED", "MODIFIED"])
        self.assertEqual({e["object"]["metadata"]["name"] for e in evs}, {"t"})
        # fieldSelector on spec.nodeName in a cluster-wide watch.
        w = self.s.watch("/api/v1/pods?watch=1&fieldSelector=spec.nodeName%%3Dnode-w"
                         "&resourceVersion=%s" % self.rv())
        self.create("/api/v1/namespaces/tr/pods", pod("v", "tr", node="elsewhere"))
        self.create("/api/v1/namespaces/tr2/pods", pod("w", "tr2", node="node-w"))
        ev = w.next_event()
        w.close()
        self.assertEqual((ev["type"], ev["object"]["metadata"]["name"]), ("ADDED", "w"))

    def test_close_watches_abrupt(self):
        w = self.s.watch("/api/v1/pods?watch=1&resourceVersion=%s" % self.rv())
        deadline = time.time() + 5
        while not self.s.control("GET", "watches")["watches"] and time.time() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(len(self.s.control("GET", "watches")["watches"]), 1)
        self.assertGreaterEqual(self.s.control("POST", "close-watches")["closed"], 1)
        with self.assertRaises(ConnectionError):
            w.next_event()
        w.close()
        # midobject: the stream ends inside an event (half a JSON object, no newline).
        w = self.s.watch("/api/v1/pods?watch=1&resourceVersion=%s" % self.rv())
        while not self.s.control("GET", "watches")["watches"] and time.time() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(
            self.s.control("POST", "close-watches", mode="midobject")["closed"], 1)
        with self.assertRaises(ConnectionError):
            w.next_event()
        self.assertTrue(w.pending.startswith(b'{"type":"MODIFIED","object":{'))
        self.assertNotIn(b"\n", w.pending)
        w.close()
        # A clean close ends the chunked stream instead.
        w = self.s.watch("/api/v1/pods?watch=1&resourceVersion=%s" % self.rv())
        while not self.s.control("GET", "watches")["watches"] and time.time() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(self.s.control("POST", "close-watches", mode="clean")["closed"], 1)
        self.assertIsNone(w.next_event())
        w.close()

    def test_watch_pool_crd(self):
        rv = self.rv()
        w = self.s.watch(POOLS_V1 + "/inferencepools?watch=1&resourceVersion=%s" % rv)
        pool = self.create(POOLS_V1 + "/namespaces/crd/inferencepools", {
            "apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": "p"}, "spec": {"selector": {"matchLabels": {"app": "v"}},
                                                "targetPorts": [{"number": 8000}]},
            "status": {"ignored": True}})
        self.assertNotIn("status", pool)
        self.assertEqual(pool["metadata"]["generation"], 1)
        # The same kind in the other group is a different store.
        self.assertEqual(self.s.request("GET", POOLS_X + "/namespaces/crd/inferencepools/p")
                         .status, 404)
        ev = w.next_event()
        w.close()
        self.assertEqual(ev["type"], "ADDED")
        self.assertEqual(ev["object"]["spec"]["targetPorts"], [{"number": 8000}])
        lst = self.s.request("GET", POOLS_V1 + "/inferencepools").json
        self.assertEqual(lst["kind"], "InferencePoolList")
        self.assertEqual(lst["items"][0]["kind"], "InferencePool")  # CR items keep theirs
        self.assertEqual(lst["apiVersion"], "inference.networking.k8s.io/v1")
        p = self.s.request("PATCH", POOLS_V1 + "/namespaces/crd/inferencepools/p",
                           {"spec": {"targetPorts": [{"number": 8000}, {"number": 8001}]}},
                           ctype="application/merge-patch+json").json
        self.assertEqual(p["metadata"]["generation"], 2)
        r = self.s.request("PATCH", POOLS_V1 + "/namespaces/crd/inferencepools/p", {"spec": {}},
                           ctype="application/strategic-merge-patch+json")
        self.assertStatus(r, 415, "UnsupportedMediaType")

    # ---- writes and errors ----

    def test_write_errors(self):
        base = "/api/v1/namespaces/err/pods"
        self.create(base, pod("dup", "err"))
        r = self.s.request("POST", base, pod("dup", "err"))
        self.assertStatus(r, 409, "AlreadyExists")
        self.assertEqual(r.json["message"], 'pods "dup" already exists')
        self.assertEqual(r.json["details"], {"name": "dup", "kind": "pods"})
        r = self.s.request("GET", base + "/nope")
        self.assertStatus(r, 404, "NotFound")
        self.assertEqual(r.json["message"], 'pods "nope" not found')
        self.assertStatus(self.s.request("POST", base, b"{not json"), 400, "BadRequest")
        self.assertStatus(self.s.request("POST", base, pod("Bad_Name", "err")), 422, "Invalid")
        self.assertStatus(self.s.request("POST", base, pod("x", "other")), 400, "BadRequest")
        cur = self.s.request("GET", base + "/dup").json
        stale = dict(cur, metadata=dict(cur["metadata"], resourceVersion="1"))
        r = self.s.request("PUT", base + "/dup", stale)
        self.assertStatus(r, 409, "Conflict")
        # PUT on the main resource keeps the status; an unchanged PUT keeps the version.
        upd = json.loads(json.dumps(cur))
        upd["status"] = {"phase": "Running"}
        r = self.s.request("PUT", base + "/dup", upd)
        self.assertEqual(r.json["status"]["phase"], "Pending")
        self.assertEqual(r.json["metadata"]["resourceVersion"], cur["metadata"]["resourceVersion"])
        upd["metadata"]["labels"] = {"k": "v"}
        r = self.s.request("PUT", base + "/dup", upd)
        self.assertGreater(int(r.json["metadata"]["resourceVersion"]),
                           int(cur["metadata"]["resourceVersion"]))
        self.assertEqual(r.json["metadata"]["uid"], cur["metadata"]["uid"])
        self.assertStatus(self.s.request("DELETE", base + "/nope"), 404, "NotFound")
        self.assertStatus(self.s.request("GET", "/api/v1/namespaces/err/bogus"), 404, "NotFound")

    def test_patch_types(self):
        base = "/api/v1/namespaces/pt/pods"
        p = pod("m", "pt")
        p["spec"]["containers"].append({"name": "side", "image": "busybox"})
        self.create(base, p)
        r = self.s.request("PATCH", base + "/m", {"spec": {"containers": [
            {"name": "side", "image": "busybox:2"}]}},
            ctype="application/strategic-merge-patch+json")
        self.assertEqual([(c["name"], c["image"]) for c in r.json["spec"]["containers"]],
                         [("c", "vllm"), ("side", "busybox:2")])
        r = self.s.request("PATCH", base + "/m", {"spec": {"containers": [
            {"name": "c", "image": "vllm:1"}]}}, ctype="application/merge-patch+json")
        self.assertEqual([c["name"] for c in r.json["spec"]["containers"]], ["c"])
        r = self.s.request("PATCH", base + "/m", [
            {"op": "add", "path": "/metadata/labels/x", "value": "1"},
            {"op": "test", "path": "/spec/nodeName", "value": "n1"}],
            ctype="application/json-patch+json")
        self.assertEqual(r.json["metadata"]["labels"], {"x": "1"})
        r = self.s.request("PATCH", base + "/m", {"metadata": {"labels": {"x": None}}},
                           ctype="application/merge-patch+json")
        self.assertEqual(r.json["metadata"]["labels"], {})
        r = self.s.request("PATCH", base + "/m", {"metadata": {}}, ctype="text/plain")
        self.assertStatus(r, 415, "UnsupportedMediaType")
        r = self.s.request("PATCH", base + "/m?fieldManager=t", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m", "labels": {"ssa": "y"}}},
            ctype="application/apply-patch+yaml")
        self.assertEqual(r.json["metadata"]["labels"], {"ssa": "y"})
        # ServiceAccount: secrets merge by name, imagePullSecrets are replaced (no strategy),
        # as the /openapi/v2 definitions tell kubectl.
        sa_path = "/api/v1/namespaces/patch/serviceaccounts"
        self.create(sa_path, {"apiVersion": "v1", "kind": "ServiceAccount",
                              "metadata": {"name": "sa"}, "secrets": [{"name": "s1"}],
                              "imagePullSecrets": [{"name": "p1"}, {"name": "p2"}]})
        r = self.s.request("PATCH", sa_path + "/sa", {
            "secrets": [{"name": "s2"}], "imagePullSecrets": [{"name": "p2"}]},
            ctype="application/strategic-merge-patch+json")
        self.assertEqual(r.json["secrets"], [{"name": "s1"}, {"name": "s2"}])
        self.assertEqual(r.json["imagePullSecrets"], [{"name": "p2"}])

    def test_control_objects_update_in_place(self):
        self.s.control("POST", "objects", body=[pod("o", "ctl", ip="10.4.0.1", ready=False)])
        first = self.s.request("GET", "/api/v1/namespaces/ctl/pods/o").json
        w = self.s.watch("/api/v1/namespaces/ctl/pods?watch=1&resourceVersion=%s"
                         % first["metadata"]["resourceVersion"])
        out = self.s.control("POST", "objects", body={"objects": [
            pod("o", "ctl", ip="10.4.0.1", ready=True)]})
        self.assertEqual(out["objects"], 1)
        ev = w.next_event()
        w.close()
        self.assertEqual(ev["type"], "MODIFIED")
        self.assertEqual(ev["object"]["metadata"]["uid"], first["metadata"]["uid"])
        self.assertEqual(ev["object"]["status"]["conditions"], [{"type": "Ready",
                                                                  "status": "True"}])
        r = self.s.request("POST", "/fake/objects", [{"apiVersion": "v9", "kind": "Nope"}],
                           url=self.s.control_url)
        self.assertStatus(r, 400, "BadRequest")

    def test_secret_string_data(self):
        sec = self.create("/api/v1/namespaces/sd/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"password": "hunter2"}, "data": {"other": "eA=="}})
        self.assertNotIn("stringData", sec)
        self.assertEqual(sec["type"], "Opaque")
        self.assertEqual(sec["data"], {"other": "eA==", "password": "aHVudGVyMg=="})

    def test_protobuf_bodies(self):
        def field(num, payload):
            assert len(payload) < 128
            return bytes([num << 3 | 2, len(payload)]) + payload

        def envelope(api_version, kind, raw):
            type_meta = field(1, api_version.encode()) + field(2, kind.encode())
            return b"k8s\x00" + field(1, type_meta) + field(2, raw)

        pb = "application/vnd.kubernetes.protobuf"
        meta = field(1, b"pb-sa") + field(11, field(1, b"team") + field(2, b"a"))
        r = self.s.request("POST", "/api/v1/namespaces/pb/serviceaccounts",
                           envelope("v1", "ServiceAccount", field(1, meta)), ctype=pb)
        self.assertEqual(r.status, 201, r.raw)
        self.assertEqual(r.json["metadata"]["name"], "pb-sa")
        self.assertEqual(r.json["metadata"]["labels"], {"team": "a"})
        r = self.s.request("POST", "/api/v1/namespaces/pb/pods",
                           envelope("v1", "Pod", field(1, meta)), ctype=pb)
        self.assertStatus(r, 415, "UnsupportedMediaType")
        r = self.s.request("POST", "/api/v1/namespaces/pb/serviceaccounts", b"\x0a\x05abc",
                           ctype=pb)
        self.assertStatus(r, 400, "BadRequest")
        r = self.s.request("POST", "/api/v1/namespaces/pb/serviceaccounts",
                           b"k8s\x00\x0a\x7fshort", ctype=pb)
        self.assertStatus(r, 400, "BadRequest")

    def test_graceful_delete(self):
        self.s.control("POST", "graceful", seconds="1")
        try:
            self.create("/api/v1/namespaces/gr/pods", pod("g", "gr"))
            w = self.s.watch("/api/v1/namespaces/gr/pods?watch=1&resourceVersion=%s" % self.rv())
            t0 = time.time()
            r = self.s.request("DELETE", "/api/v1/namespaces/gr/pods/g")
            self.assertIn("deletionTimestamp", r.json["metadata"])
            self.assertEqual(r.json["metadata"]["deletionGracePeriodSeconds"], 1)
            ev1, ev2 = w.next_event(), w.next_event()
            w.close()
            self.assertEqual(ev1["type"], "MODIFIED")
            self.assertIn("deletionTimestamp", ev1["object"]["metadata"])
            self.assertEqual(ev2["type"], "DELETED")
            self.assertGreaterEqual(time.time() - t0, 0.9)
            self.assertEqual(self.s.request("GET", "/api/v1/namespaces/gr/pods/g").status, 404)
        finally:
            self.s.control("POST", "graceful", seconds="0")

    def test_table_output(self):
        self.create("/api/v1/namespaces/tab/pods", pod("tp", "tab", ip="10.2.0.1", ready=True))
        r = self.s.request("GET", "/api/v1/namespaces/tab/pods", headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
        self.assertEqual(r.json["kind"], "Table")
        self.assertEqual([c["name"] for c in r.json["columnDefinitions"]][:3],
                         ["Name", "Ready", "Status"])
        self.assertEqual(r.json["rows"][0]["cells"][:3], ["tp", "0/1", "Pending"])
        self.assertEqual(r.json["rows"][0]["object"]["kind"], "PartialObjectMetadata")

    # ---- RBAC, TokenReview, SubjectAccessReview ----

    def sa_token(self, ns, name):
        self.create("/api/v1/namespaces/%s/serviceaccounts" % ns, {
            "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
        sec = self.create("/api/v1/namespaces/%s/secrets" % ns, {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": name + "-token",
                         "annotations": {"kubernetes.io/service-account.name": name}}})
        self.assertEqual(base64.b64decode(sec["data"]["ca.crt"]).decode(),
                         read_text(self.s.path("ca.crt")))
        self.assertEqual(base64.b64decode(sec["data"]["namespace"]).decode(), ns)
        return base64.b64decode(sec["data"]["token"]).decode()

    def review(self, token):
        return self.create("/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token}})

    def sar(self, user, groups=(), path=None, **resource):
        spec = {"user": user, "groups": list(groups)}
        if path:
            spec["nonResourceAttributes"] = {"path": path, "verb": "get"}
        else:
            spec["resourceAttributes"] = resource
        return self.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": spec})

    def test_token_review(self):
        token = self.sa_token("tr-ns", "scraper")
        tr = self.review(token)
        self.assertEqual(tr["kind"], "TokenReview")
        self.assertTrue(tr["status"]["authenticated"])
        self.assertEqual(tr["status"]["user"]["username"], "system:serviceaccount:tr-ns:scraper")
        self.assertEqual(tr["status"]["user"]["groups"], [
            "system:serviceaccounts", "system:serviceaccounts:tr-ns", "system:authenticated"])
        bad = self.review("not-a-token")
        self.assertNotIn("authenticated", bad["status"])
        self.assertEqual(bad["status"]["user"], {})
        admin = self.review(self.s.token)
        self.assertEqual(admin["status"]["user"]["username"], "fake-admin")
        # The service account token authenticates requests until the account is deleted.
        self.assertEqual(self.s.request("GET", "/version", token=token).status, 200)
        self.s.request("DELETE", "/api/v1/namespaces/tr-ns/serviceaccounts/scraper")
        self.assertEqual(self.s.request("GET", "/version", token=token).status, 401)
        self.assertNotIn("authenticated", self.review(token)["status"])

    def test_rbac_decisions(self):
        token = self.sa_token("rb", "prom")
        user = "system:serviceaccount:rb:prom"
        groups = ["system:serviceaccounts", "system:serviceaccounts:rb", "system:authenticated"]
        self.assertFalse(self.sar(user, groups, path="/metrics")["status"]["allowed"])
        r = self.s.request("GET", "/api/v1/pods", token=token)
        self.assertStatus(r, 403, "Forbidden")
        self.assertEqual(r.json["message"], 'pods is forbidden: User "%s" cannot list resource '
                         '"pods" in API group "" at the cluster scope' % user)
        # The upstream scrape role: nonResourceURLs /metrics, verb get.
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        self.create(rbac + "/clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "metrics-reader"},
            "rules": [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]})
        self.create(rbac + "/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "prom-metrics"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "metrics-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "prom", "namespace": "rb"}]})
        ok = self.sar(user, groups, path="/metrics")["status"]
        self.assertTrue(ok["allowed"])
        self.assertEqual(ok["reason"], 'RBAC: allowed by ClusterRoleBinding "prom-metrics" of '
                         'ClusterRole "metrics-reader" to ServiceAccount "prom/rb"')
        self.assertFalse(self.sar(user, groups, path="/metrics/extra")["status"]["allowed"])
        self.assertFalse(self.sar("someone-else", path="/metrics")["status"]["allowed"])
        # Discovery is open to every authenticated caller (system:discovery).
        self.assertTrue(self.sar("anyone", ["system:authenticated"], path="/apis/x")["status"][
            "allowed"])
        # A namespaced Role bound in one namespace only.
        self.create(rbac + "/namespaces/rb/roles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list",
                                                                             "watch"]}]})
        self.create(rbac + "/namespaces/rb/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "prom-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                        "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "prom"}]})
        self.assertEqual(self.s.request("GET", "/api/v1/namespaces/rb/pods", token=token).status,
                         200)
        self.assertEqual(self.s.request("GET", "/api/v1/namespaces/other/pods",
                                        token=token).status, 403)
        self.assertEqual(self.s.request("GET", "/api/v1/pods", token=token).status, 403)
        self.assertEqual(self.s.request("POST", "/api/v1/namespaces/rb/pods", pod("z", "rb"),
                                        token=token).status, 403)
        self.assertTrue(self.sar(user, groups, namespace="rb", verb="watch", resource="pods")[
            "status"]["allowed"])
        self.assertFalse(self.sar(user, groups, namespace="rb", verb="delete", resource="pods")[
            "status"]["allowed"])
        # An agent-like ClusterRole: inference pools cluster-wide, and the review APIs.
        self.create(rbac + "/clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "agent"},
            "rules": [{"apiGroups": ["inference.networking.k8s.io"],
                       "resources": ["inferencepools"], "verbs": ["list", "watch"]}]})
        self.create(rbac + "/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "agent"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                       "kind": "ClusterRole", "name": "agent"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:rb"}]})
        self.assertEqual(self.s.request("GET", POOLS_V1 + "/inferencepools", token=token).status,
                         200)
        r = self.s.request("GET", POOLS_X + "/inferencepools", token=token)
        self.assertStatus(r, 403, "Forbidden")
        self.assertIn('in API group "inference.networking.x-k8s.io"', r.json["message"])
        r = self.s.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token}}, token=token)
        self.assertStatus(r, 403, "Forbidden")
        self.create(rbac + "/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "agent-delegator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": "prom", "namespace": "rb"}]})
        r = self.s.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token}}, token=token)
        self.assertEqual(r.status, 201, r.raw)
        self.assertTrue(r.json["status"]["authenticated"])
        # Bad review bodies.
        r = self.s.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "u"}})
        self.assertStatus(r, 400, "BadRequest")

    # ---- faults, log ----

    def test_fault_injection_and_latency(self):
        self.s.control("POST", "fail", path="^/api/v1/namespaces/flt/", code="500", count="2")
        codes = [self.s.request("GET", "/api/v1/namespaces/flt/pods").status for _ in range(3)]
        self.assertEqual(codes, [500, 500, 200])
        self.s.control("POST", "fail", path="flt2", code="503", count="0")
        r = self.s.request("GET", "/api/v1/namespaces/flt2/pods")
        self.assertStatus(r, 503, "ServiceUnavailable")
        self.assertEqual(r.headers.get("Retry-After"), "1")
        self.assertEqual(self.s.request("GET", "/api/v1/namespaces/flt2/pods").status, 503)
        self.assertEqual(self.s.control("DELETE", "fail")["cleared"], 1)
        self.assertEqual(self.s.request("GET", "/api/v1/namespaces/flt2/pods").status, 200)
        self.s.control("POST", "latency", ms="300")
        try:
            t0 = time.time()
            self.assertEqual(self.s.request("GET", "/api/v1/namespaces/flt/pods").status, 200)
            self.assertGreaterEqual(time.time() - t0, 0.3)
        finally:
            self.s.control("POST", "latency", ms="0")

    def test_garbage_input_keeps_serving(self):
        host, port = urllib.parse.urlsplit(self.s.url).hostname, urllib.parse.urlsplit(
            self.s.url).port

        def raw(data, tls=True):
            with socket.create_connection((host, port), timeout=5) as sock:
                conn = self.s.ctx.wrap_socket(sock, server_hostname=host) if tls else sock
                conn.sendall(data)
                out = b""
                try:
                    while len(out) < 65536:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        out += chunk
                except (socket.timeout, ConnectionError, ssl.SSLError):
                    pass
                finally:
                    conn.close()
                return out

        self.assertEqual(raw(b"GET / HTTP/1.1\r\n\r\n", tls=False), b"")  # no TLS: dropped
        self.assertIn(b" 400 ", raw(b"\x00\xff garbage\r\n\r\n")[:20])
        big = b"GET /version HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
        self.assertIn(b" 431 ", raw(big)[:20])
        huge = (b"POST /api/v1/namespaces/g/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + self.s.token.encode() + b"\r\nContent-Length: 999999999\r\n\r\n")
        self.assertIn(b" 413 ", raw(huge)[:20])
        chunked = (b"POST /api/v1/namespaces/g/pods HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                   + self.s.token.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        self.assertIn(b" 400 ", raw(chunked)[:20])
        for body in (b"[]", b"null", b'"x"', b'{"metadata": 5}', b'{"metadata": {"labels": 1}}',
                     b'{"apiVersion": "v2", "kind": "Pod"}', b"\xff\xfe"):
            r = self.s.request("POST", "/api/v1/namespaces/g/pods", body)
            self.assertIn(r.status, (400, 422), body)
            self.assertEqual(r.json["kind"], "Status")
        self.assertEqual(self.s.request("GET", "/version").status, 200)

    def test_request_log(self):
        self.s.request("GET", "/api/v1/namespaces/logged/pods", token=None)
        self.s.request("GET", "/api/v1/namespaces/logged/pods?limit=1")
        log = [e for e in self.s.control("GET", "requests")["requests"]
               if e["path"] == "/api/v1/namespaces/logged/pods"]
        self.assertEqual([(e["auth"], e["status"], e["user"]) for e in log],
                         [(False, 401, ""), (True, 200, "fake-admin")])
        self.assertEqual(log[1]["query"], "limit=1")
        self.assertEqual(log[1]["method"], "GET")
        only = self.s.control("GET", "requests", path="^/api/v1/namespaces/logged/pods\\?limit")
        self.assertEqual([e["query"] for e in only["requests"]], ["limit=1"])
        later = self.s.control("GET", "requests", since=str(log[1]["time"] + 0.000001),
                               path="^/api/v1/namespaces/logged")
        self.assertEqual(later["requests"], [])


class Lifecycle(unittest.TestCase):
    """Tests that stop, rotate or restart a server get their own."""

    def setUp(self):
        self.s = FakeServer()

    def tearDown(self):
        self.s.stop()

    def test_stop_modes(self):
        w = self.s.watch("/api/v1/pods?watch=1&resourceVersion=0", timeout=5)
        self.s.control("POST", "stop", mode="refuse")
        with self.assertRaises(ConnectionError):
            while w.next_event() is not None:
                pass
        w.close()
        with self.assertRaises(ConnectionRefusedError):
            self.s.request("GET", "/version")
        self.assertEqual(self.s.control("GET", "state")["mode"], "refuse")
        self.s.control("POST", "start")
        self.assertEqual(self.s.request("GET", "/version").status, 200)
        self.s.control("POST", "stop", mode="hang")
        t0 = time.time()
        with self.assertRaises((socket.timeout, TimeoutError, ssl.SSLError)):
            self.s.request("GET", "/version", timeout=1)
        self.assertGreaterEqual(time.time() - t0, 0.9)
        self.s.control("POST", "start")
        self.assertEqual(self.s.request("GET", "/version").status, 200)
        self.s.control("POST", "stop", mode="500")
        r = self.s.request("GET", "/api/v1/pods")
        self.assertEqual((r.status, r.json["reason"]), (500, "InternalError"))
        self.s.control("POST", "start")
        self.assertEqual(self.s.request("GET", "/api/v1/pods").status, 200)
        self.s.control("POST", "stop", mode="garbage")
        r = self.s.request("GET", "/api/v1/pods")
        self.assertEqual(r.status, 200)
        self.assertIn(b"garbage", r.raw)
        with self.assertRaises(ValueError):
            json.loads(r.raw)
        self.s.control("POST", "start")
        self.assertEqual(self.s.request("GET", "/api/v1/pods").status, 200)

    def test_rotate_token(self):
        old = self.s.token
        out = self.s.control("POST", "rotate-token", user="fake-admin")
        self.assertNotEqual(out["token"], old)
        self.assertEqual(self.s.token, out["token"])  # admin.token rewritten
        self.assertIn("token: " + out["token"], read_text(self.s.path("kubeconfig")))
        self.assertEqual(self.s.request("GET", "/version", token=old).status, 401)
        self.assertEqual(self.s.request("GET", "/version").status, 200)
        self.s.control("POST", "tokens", body={"token": "t-1", "user": "bob", "groups": ["g"]})
        tr = self.s.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": "t-1"}}).json
        self.assertEqual(tr["status"]["user"]["groups"], ["g", "system:authenticated"])
        self.s.control("DELETE", "tokens", token="t-1")
        self.assertEqual(self.s.request("GET", "/version", token="t-1").status, 401)

    def test_sigterm_with_open_watch(self):
        w = self.s.watch("/api/v1/pods?watch=1", timeout=5)
        self.s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.s.proc.wait(10), 0)
        w.close()


class Startup(unittest.TestCase):
    def test_state_file_and_history_cap(self):
        state = {"objects": [pod("ready-pod", "s1", ip="10.3.0.4", ready=True),
                             {"apiVersion": "inference.networking.x-k8s.io/v1alpha2",
                              "kind": "InferenceModel", "metadata": {"name": "m",
                                                                      "namespace": "s1"},
                              "spec": {"modelName": "chat", "targetModels": [{"name": "llama"}]}}],
                 "tokens": {"state-token": {"user": "carol", "groups": ["ops"]}}}
        s = FakeServer("--history", "3", state=state)
        try:
            p = s.request("GET", "/api/v1/namespaces/s1/pods/ready-pod").json
            self.assertEqual(p["status"]["podIP"], "10.3.0.4")
            self.assertEqual(p["status"]["conditions"], [{"type": "Ready", "status": "True"}])
            m = s.request("GET", POOLS_X + "/namespaces/s1/inferencemodels/m").json
            self.assertEqual(m["spec"]["modelName"], "chat")
            r = s.request("GET", "/api/v1/pods", token="state-token")
            self.assertEqual(r.status, 403)
            self.assertIn('User "carol"', r.json["message"])
            rv = s.request("GET", "/api/v1/pods").json["metadata"]["resourceVersion"]
            for i in range(4):
                s.request("POST", "/api/v1/namespaces/s1/pods", pod("h%d" % i, "s1"))
            w = s.watch("/api/v1/pods?watch=1&resourceVersion=%s" % rv)
            ev = w.next_event()
            w.close()
            self.assertEqual((ev["type"], ev["object"]["code"]), ("ERROR", 410))
        finally:
            s.stop()

    def test_keep_certs_restart(self):
        first = FakeServer()
        try:
            port = first.url.rsplit(":", 1)[1]
            token, ca = first.token, read_text(first.path("ca.crt"))
            old_ctx = first.ctx
            self.assertEqual(first.request("GET", "/version").status, 200)
        finally:
            first.stop(remove=False)
        self.assertFalse(os.path.exists(first.path("ready")))  # removed on SIGTERM
        second = FakeServer("--keep-certs", "--port", port, directory=first.dir)
        try:
            self.assertEqual(second.url, first.url)
            self.assertEqual(read_text(second.path("ca.crt")), ca)
            self.assertEqual(second.token, token)
            r = second.request("GET", "/api/v1/pods", token=token, ctx=old_ctx)
            self.assertEqual(r.status, 200, r.raw)
        finally:
            second.stop()

    def test_bad_flags(self):
        with tempfile.TemporaryDirectory(prefix="fakeapi-flags-") as d:
            self.bad_flags(d)

    def bad_flags(self, tmp):
        for args, words in ((["--port", "abc"], "--port"), (["--bind", "0.0.0.0"], "wildcard"),
                            (["--bind", "localhost"], "IP address"),
                            (["--disable", "nope/v1"], "nope/v1"), ([], "--dir")):
            if args and args[0] != "--dir":
                args = ["--dir", tmp] + args
            p = subprocess.run([sys.executable, SCRIPT] + args, capture_output=True, text=True,
                               timeout=20)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
            self.assertIn(words, p.stderr)
        # An address this host does not have (TEST-NET-1): the bind fails, one line, exit 1.
        p = subprocess.run([sys.executable, SCRIPT, "--dir", tmp, "--bind",
                            "192.0.2.1"], capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("cannot listen on 192.0.2.1", p.stderr)
        p = subprocess.run([sys.executable, SCRIPT, "--dir", tmp, "--state",
                            "/nonexistent.json"], capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn("/nonexistent.json", p.stderr)


if __name__ == "__main__":
    unittest.main()
