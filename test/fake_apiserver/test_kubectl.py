"""Debian's kubectl (kubernetes-client) against the fake API server: what a person would run.
A missing kubectl is a failure, not a skip."""

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fakeapi_testlib import FakeServer, pod  # noqa: E402

MANIFEST = """apiVersion: v1
kind: Pod
metadata:
  name: vllm-a
  namespace: apply
  labels:
    app: vllm
    rev: "%(rev)s"
spec:
  nodeName: n1
  containers:
  - name: vllm
    image: vllm/vllm-openai:%(rev)s
    ports:
    - containerPort: 8000
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool
  namespace: apply
  labels:
    rev: "%(rev)s"
spec:
  selector:
    matchLabels:
      app: vllm
  targetPorts:
  - number: 8000
  endpointPickerRef:
    name: epp
    port:
      number: 9002
"""


UPSTREAM_GUIDE = """set -euo pipefail
kubectl apply -f - <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: inference-gateway-metrics-reader
rules:
- nonResourceURLs:
  - /metrics
  verbs:
  - get
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: inference-gateway-sa-metrics-reader
  namespace: default
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: inference-gateway-sa-metrics-reader-role-binding
  namespace: default
subjects:
- kind: ServiceAccount
  name: inference-gateway-sa-metrics-reader
  namespace: default
roleRef:
  kind: ClusterRole
  name: inference-gateway-metrics-reader
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: v1
kind: Secret
metadata:
  name: inference-gateway-sa-metrics-reader-secret
  namespace: default
  annotations:
    kubernetes.io/service-account.name: inference-gateway-sa-metrics-reader
type: kubernetes.io/service-account-token
EOF
TOKEN=$(kubectl -n default get secret inference-gateway-sa-metrics-reader-secret -o jsonpath='{.secrets[0].name}' -o jsonpath='{.data.token}' | base64 --decode)
echo "$TOKEN"
"""

OTHER_ACCOUNT = """apiVersion: v1
kind: ServiceAccount
metadata:
  name: other
  namespace: default
---
apiVersion: v1
kind: Secret
metadata:
  name: other-token
  namespace: default
  annotations:
    kubernetes.io/service-account.name: other
type: kubernetes.io/service-account-token
"""


RBAC_V1 = "/apis/rbac.authorization.k8s.io/v1"
ROLE = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: validated
rules:
- nonResourceURLs:
  - /metrics
  verbs:
  - get
"""


def pool_v1(name, ns):
    return {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": "vllm"}},
                     "targetPorts": [{"number": 8000}]}}


def pool_x(name, ns):
    return {"apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferencePool",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": "vllm"}, "targetPortNumber": 8000}}


class Kubectl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kubectl = shutil.which("kubectl")
        if not cls.kubectl:
            raise AssertionError("kubectl is not installed (Debian package kubernetes-client; "
                                 "bash scripts/install-deps.sh)")
        # CI logs show which kubectl ran (Debian 12's kubernetes-client is v1.20).
        version = subprocess.run([cls.kubectl, "version", "--client"], capture_output=True,
                                 text=True, timeout=30)
        print("%s: %s" % (cls.kubectl, (version.stdout or version.stderr).strip()),
              file=sys.stderr, flush=True)
        if version.returncode != 0:
            raise AssertionError("kubectl version --client failed: " + version.stderr)
        cls.s = FakeServer(state=[
            pod("vllm-0", "team-a", "n1", {"app": "vllm"}, ip="10.0.1.1", ready=True),
            pod("vllm-1", "team-a", "n2", {"app": "vllm"}, ip="10.0.2.1", ready=True),
            pod("sglang-0", "team-b", "n1", {"app": "sglang"}),
            pool_v1("pool-v1", "team-a"), pool_x("pool-alpha", "team-b")])
        cls.home = os.path.join(cls.s.dir, "home")  # kubectl's discovery cache stays private
        os.makedirs(cls.home)

    @classmethod
    def tearDownClass(cls):
        cls.s.stop()

    def run_kubectl(self, *args, kubeconfig="kubeconfig", check=True, stdin=None, timeout=30):
        env = dict(os.environ, HOME=self.home, KUBECACHEDIR=os.path.join(self.home, "cache"))
        env.pop("KUBECONFIG", None)
        p = subprocess.run([self.kubectl, "--kubeconfig", self.s.path(kubeconfig), *args],
                           input=stdin, capture_output=True, text=True, timeout=timeout, env=env)
        if check:
            self.assertEqual(p.returncode, 0, "kubectl %s: %s" % (" ".join(args), p.stderr))
        return p

    def lines(self, out):
        return [line.split() for line in out.strip().splitlines()]

    def test_get_pods(self):
        rows = self.lines(self.run_kubectl("get", "pods", "-A").stdout)
        self.assertEqual(rows[0][:3], ["NAMESPACE", "NAME", "READY"])
        self.assertEqual(sorted((r[0], r[1]) for r in rows[1:]),
                         [("team-a", "vllm-0"), ("team-a", "vllm-1"), ("team-b", "sglang-0")])
        rows = self.lines(self.run_kubectl("get", "pods", "-A", "--field-selector",
                                           "spec.nodeName=n1", "-o", "wide").stdout)
        self.assertEqual(sorted(r[1] for r in rows[1:]), ["sglang-0", "vllm-0"])
        self.assertIn("10.0.1.1", [r[6] for r in rows[1:]])
        out = json.loads(self.run_kubectl("get", "pods", "-n", "team-a", "-l", "app=vllm",
                                          "-o", "json").stdout)
        self.assertEqual(out["kind"], "List")
        self.assertEqual([i["metadata"]["name"] for i in out["items"]], ["vllm-0", "vllm-1"])
        # The other kubeconfig variants work the same.
        for variant in ("kubeconfig-cert", "kubeconfig-files", "kubeconfig-tokenfile"):
            rows = self.lines(self.run_kubectl("get", "pods", "-n", "team-b",
                                               kubeconfig=variant).stdout)
            self.assertEqual([r[0] for r in rows[1:]], ["sglang-0"], variant)
        p = self.run_kubectl("get", "pods", "-n", "team-a", "missing", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('pods "missing" not found', p.stderr)

    def test_get_inferencepools(self):
        both = self.run_kubectl("get", "inferencepools.inference.networking.k8s.io", "-A").stdout
        self.assertEqual([r[:2] for r in self.lines(both)[1:]], [["team-a", "pool-v1"]])
        alpha = self.run_kubectl("get", "inferencepools.inference.networking.x-k8s.io",
                                 "-A").stdout
        self.assertEqual([r[:2] for r in self.lines(alpha)[1:]], [["team-b", "pool-alpha"]])
        # The bare resource name resolves to the first group discovery lists: the GA one.
        short = self.run_kubectl("get", "inferencepools", "-A", "-o", "json").stdout
        self.assertEqual([i["metadata"]["name"] for i in json.loads(short)["items"]],
                         ["pool-v1"])
        out = json.loads(self.run_kubectl("get", "inferencepool.inference.networking.k8s.io",
                                          "pool-v1", "-n", "team-a", "-o", "json").stdout)
        self.assertEqual(out["spec"]["targetPorts"], [{"number": 8000}])
        self.run_kubectl("get", "inferencemodels", "-A")
        res = self.run_kubectl("api-resources").stdout
        self.assertIn("inference.networking.x-k8s.io/v1alpha2", res)
        self.assertIn("inferencemodelrewrites", res)

    def test_apply_create_then_update(self):
        p = self.run_kubectl("apply", "-f", "-", stdin=MANIFEST % {"rev": "1"})
        self.assertIn("pod/vllm-a created", p.stdout)
        self.assertIn("inferencepool.inference.networking.k8s.io/pool created", p.stdout)
        first = self.s.request("GET", "/api/v1/namespaces/apply/pods/vllm-a").json
        self.assertEqual(first["metadata"]["labels"], {"app": "vllm", "rev": "1"})
        self.assertIn("kubectl.kubernetes.io/last-applied-configuration",
                      first["metadata"]["annotations"])
        p = self.run_kubectl("apply", "-f", "-", stdin=MANIFEST % {"rev": "2"})
        self.assertIn("pod/vllm-a configured", p.stdout)
        self.assertIn("inferencepool.inference.networking.k8s.io/pool configured", p.stdout)
        second = self.s.request("GET", "/api/v1/namespaces/apply/pods/vllm-a").json
        self.assertEqual(second["metadata"]["labels"], {"app": "vllm", "rev": "2"})
        self.assertEqual(second["spec"]["containers"][0]["image"], "vllm/vllm-openai:2")
        self.assertEqual(second["metadata"]["uid"], first["metadata"]["uid"])
        pool = self.s.request("GET", "/apis/inference.networking.k8s.io/v1/namespaces/apply/"
                              "inferencepools/pool").json
        self.assertEqual(pool["metadata"]["labels"], {"rev": "2"})
        self.assertEqual(pool["metadata"]["generation"], 1)  # only metadata changed
        p = self.run_kubectl("apply", "-f", "-", stdin=MANIFEST % {"rev": "2"})
        self.assertIn("pod/vllm-a unchanged", p.stdout)
        third = self.s.request("GET", "/api/v1/namespaces/apply/pods/vllm-a").json
        self.assertEqual(third["metadata"]["resourceVersion"],
                         second["metadata"]["resourceVersion"])
        patches = [e for e in self.s.control("GET", "requests")["requests"]
                   if e["method"] == "PATCH" and e["path"].endswith("/pods/vllm-a")]
        self.assertEqual([e["status"] for e in patches], [200])
        self.run_kubectl("delete", "-f", "-", stdin=MANIFEST % {"rev": "2"})
        self.assertEqual(self.s.request("GET", "/api/v1/namespaces/apply/pods/vllm-a").status,
                         404)

    def test_apply_validates_and_patches_builtin_groups(self):
        # kubectl checks the manifest against the server's schema before sending it: v1.20
        # client-side from /openapi/v2, newer ones by sending fieldValidation=Strict. Either
        # way an unknown field is refused and nothing is created.
        bad = ROLE.replace("  verbs:", "  verbz:") + "secretz: []\n"
        p = self.run_kubectl("apply", "-f", "-", stdin=bad, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('unknown field "secretz"', p.stderr)
        self.assertEqual(self.s.request("GET", RBAC_V1 + "/clusterroles/validated").status, 404)
        p = self.run_kubectl("apply", "-f", "-", check=False, stdin=(
            "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata:\n"
            "  name: typo\n  namespace: apply\nspek:\n  targetPorts: []\n"))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn('unknown field "spek"', p.stderr)
        # A valid role, then a changed one: a strategic merge patch on a built-in kind outside
        # the core group.
        p = self.run_kubectl("apply", "-f", "-", stdin=ROLE)
        self.assertIn("clusterrole.rbac.authorization.k8s.io/validated created", p.stdout)
        p = self.run_kubectl("apply", "-f", "-", stdin=ROLE.replace("  - get\n",
                                                                     "  - get\n  - list\n"))
        self.assertIn("clusterrole.rbac.authorization.k8s.io/validated configured", p.stdout)
        role = self.s.request("GET", RBAC_V1 + "/clusterroles/validated").json
        self.assertEqual(role["rules"], [{"nonResourceURLs": ["/metrics"],
                                          "verbs": ["get", "list"]}])
        patches = [e for e in self.s.control("GET", "requests")["requests"]
                   if e["method"] == "PATCH" and e["path"].endswith("/clusterroles/validated")]
        self.assertEqual([e["status"] for e in patches], [200])
        self.run_kubectl("delete", "clusterrole", "validated")
        # Every schema document kubectl asked for was there (v1.20 reads /openapi/v2 in the
        # protobuf encoding; newer ones /openapi/v3, and /openapi/v2 for apply's patches).
        asked = [e for e in self.s.control("GET", "requests")["requests"]
                 if e["path"].startswith(("/openapi", "/swagger"))]
        self.assertTrue(asked)
        self.assertEqual([e for e in asked if e["status"] not in (200, 304)], [])

    def test_diff_and_server_dry_run(self):
        role = ROLE.replace("validated", "dry")
        self.run_kubectl("apply", "-f", "-", stdin=role)
        changed = role.replace("  - get\n", "  - get\n  - watch\n")
        p = self.run_kubectl("diff", "-f", "-", stdin=changed, check=False)
        self.assertEqual(p.returncode, 1, p.stderr)  # 1: there are differences
        self.assertIn("+  - watch", p.stdout)
        self.assertEqual(self.run_kubectl("diff", "-f", "-", stdin=role).stdout, "")
        p = self.run_kubectl("apply", "--dry-run=server", "-f", "-", stdin=changed)
        self.assertIn("clusterrole.rbac.authorization.k8s.io/dry configured (server dry run)",
                      p.stdout)
        got = self.s.request("GET", RBAC_V1 + "/clusterroles/dry").json
        self.assertEqual(got["rules"][0]["verbs"], ["get"])
        self.run_kubectl("delete", "clusterrole", "dry")

    def test_describe_with_events(self):
        p = self.run_kubectl("describe", "pod", "vllm-0", "-n", "team-a")
        self.assertRegex(p.stdout, r"(?m)^Name: +vllm-0$")
        self.assertRegex(p.stdout, r"(?m)^IP: +10\.0\.1\.1$")
        self.assertRegex(p.stdout, r"(?m)^Events: +<none>$")
        uid = self.s.request("GET", "/api/v1/namespaces/team-a/pods/vllm-0").json["metadata"]["uid"]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        r = self.s.request("POST", "/api/v1/namespaces/team-a/events", {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "vllm-0.1"},
            "involvedObject": {"kind": "Pod", "namespace": "team-a", "name": "vllm-0",
                               "uid": uid, "apiVersion": "v1"},
            "reason": "Pulled", "message": "image already present", "type": "Normal",
            "source": {"component": "kubelet"}, "firstTimestamp": now, "lastTimestamp": now,
            "count": 1})
        self.assertEqual(r.status, 201, r.raw)
        p = self.run_kubectl("describe", "pod", "vllm-0", "-n", "team-a")
        self.assertRegex(p.stdout, r"(?m)^ +Normal +Pulled +.*kubelet +image already present$")
        self.s.request("DELETE", "/api/v1/namespaces/team-a/events/vllm-0.1")

    def test_explain(self):
        # v1.20 reads the /openapi/v2 definitions, newer kubectl the /openapi/v3 schemas.
        p = self.run_kubectl("explain", "serviceaccount.secrets")
        self.assertEqual(p.stderr, "")
        self.assertRegex(p.stdout, r"(?m)^KIND: +ServiceAccount$")
        self.assertRegex(p.stdout, r"(?m)^(RESOURCE|FIELD): +secrets <\[\]")
        p = self.run_kubectl("explain", "inferencepools.spec",
                             "--api-version=inference.networking.x-k8s.io/v1alpha2")
        self.assertEqual(p.stderr, "")
        self.assertRegex(p.stdout, r"(?m)^KIND: +InferencePool$")
        self.assertRegex(p.stdout, r"(?m)^VERSION: +(inference\.networking\.x-k8s\.io/)?v1alpha2$")

    def test_get_watch_sees_update(self):
        self.s.request("POST", "/api/v1/namespaces/watch/pods", pod("w-0", "watch"))
        env = dict(os.environ, HOME=self.home)
        proc = subprocess.Popen([self.kubectl, "--kubeconfig", self.s.path("kubeconfig"), "get",
                                 "pods", "-n", "watch", "--watch"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.time() + 10
            while time.time() < deadline and not any(
                    w["path"].split("?")[0] == "/api/v1/namespaces/watch/pods"
                    for w in self.s.control("GET", "watches")["watches"]):
                time.sleep(0.05)
            r = self.s.request("PATCH", "/api/v1/namespaces/watch/pods/w-0/status",
                               {"status": {"phase": "Running", "podIP": "10.9.0.1"}},
                               ctype="application/merge-patch+json")
            self.assertEqual(r.status, 200)
            self.s.request("POST", "/api/v1/namespaces/watch/pods", pod("w-1", "watch"))
            lines = []
            while time.time() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line.split())
                if line.startswith("w-1"):
                    break
        finally:
            proc.kill()
            proc.communicate()
        self.assertEqual(lines[0][:3], ["NAME", "READY", "STATUS"])
        self.assertEqual([(r[0], r[2]) for r in lines[1:]],
                         [("w-0", "Pending"), ("w-0", "Running"), ("w-1", "Pending")])

    def test_service_account_token_flow(self):
        # The upstream scrape guide, without `kubectl create token`: a ServiceAccount, a token
        # Secret filled by the token controller, the token read back with kubectl.
        # (`kubectl create serviceaccount` would send protobuf, which the fake does not decode;
        # apply sends JSON.)
        self.run_kubectl("apply", "-f", "-", stdin="""apiVersion: v1
kind: Namespace
metadata:
  name: monitoring
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: prometheus
  namespace: monitoring
---
apiVersion: v1
kind: Secret
metadata:
  name: prometheus-token
  namespace: monitoring
  annotations:
    kubernetes.io/service-account.name: prometheus
type: kubernetes.io/service-account-token
""")
        b64 = self.run_kubectl("get", "secret", "prometheus-token", "-n", "monitoring", "-o",
                               "jsonpath={.data.token}").stdout
        token = base64.b64decode(b64).decode()
        self.assertEqual(len(token.split(".")), 3)

        def curl(*args):
            p = subprocess.run(["curl", "-sS", "--cacert", self.s.path("ca.crt"), *args],
                               capture_output=True, text=True, timeout=20)
            self.assertEqual(p.returncode, 0, p.stderr)
            return json.loads(p.stdout)

        review = curl("-H", "Authorization: Bearer " + self.s.token, "-H",
                      "Content-Type: application/json", "-X", "POST", "--data",
                      json.dumps({"apiVersion": "authentication.k8s.io/v1",
                                  "kind": "TokenReview", "spec": {"token": token}}),
                      self.s.url + "/apis/authentication.k8s.io/v1/tokenreviews")
        self.assertTrue(review["status"]["authenticated"])
        self.assertEqual(review["status"]["user"]["username"],
                         "system:serviceaccount:monitoring:prometheus")
        denied = curl("-H", "Authorization: Bearer " + token, self.s.url + "/api/v1/pods")
        self.assertEqual((denied["code"], denied["reason"]), (403, "Forbidden"))
        self.run_kubectl("apply", "-f", "-", stdin="""apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: pod-reader
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: prometheus-pods
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: pod-reader
subjects:
- kind: ServiceAccount
  name: prometheus
  namespace: monitoring
""")
        allowed = curl("-H", "Authorization: Bearer " + token, self.s.url + "/api/v1/pods")
        self.assertEqual(allowed["kind"], "PodList")
        self.assertLessEqual({"vllm-0", "vllm-1", "sglang-0"},
                             {i["metadata"]["name"] for i in allowed["items"]})
        nodes = curl("-H", "Authorization: Bearer " + token, self.s.url + "/api/v1/nodes")
        self.assertEqual((nodes["code"], nodes["reason"]), (403, "Forbidden"))

    def test_upstream_metrics_guide(self):
        # The upstream endpoint picker's metrics guide, as a user types it (kubectl apply of the
        # reader role, account, binding and token Secret; TOKEN read with jsonpath | base64),
        # then what a metrics-protecting agent asks: TokenReview, then SubjectAccessReview for
        # GET /metrics with the user and groups the review returned.
        env = dict(os.environ, HOME=self.home, KUBECONFIG=self.s.path("kubeconfig"))
        p = subprocess.run(["bash", "-c", UPSTREAM_GUIDE], capture_output=True, text=True,
                           timeout=60, env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        token = p.stdout.strip().splitlines()[-1]

        def post(path, body):
            r = self.s.request("POST", path, body)
            self.assertEqual(r.status, 201, r.raw)
            return r.json["status"]

        def decide(tok):
            tr = post("/apis/authentication.k8s.io/v1/tokenreviews", {
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": tok}})
            if not tr.get("authenticated"):
                return "401"
            sar = post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                "spec": {"user": tr["user"]["username"], "groups": tr["user"]["groups"],
                         "nonResourceAttributes": {"path": "/metrics", "verb": "get"}}})
            return "200" if sar["allowed"] else "403"

        self.assertEqual(decide(token), "200")
        self.assertEqual(decide("not-a-token"), "401")
        # A second account without the binding is authenticated but not allowed.
        self.run_kubectl("apply", "-f", "-", stdin=OTHER_ACCOUNT)
        other = base64.b64decode(self.run_kubectl("get", "secret", "other-token", "-o",
                                                  "jsonpath={.data.token}").stdout).decode()
        self.assertEqual(decide(other), "403")
        # Deleting the binding takes the permission away.
        self.run_kubectl("delete", "clusterrolebinding",
                         "inference-gateway-sa-metrics-reader-role-binding")
        self.assertEqual(decide(token), "403")

    def test_typed_create_and_can_i(self):
        # These commands send protobuf bodies; the fake decodes them (fakeapi/protobuf.py).
        self.run_kubectl("create", "namespace", "typed")
        self.run_kubectl("create", "serviceaccount", "bot", "-n", "typed")
        self.run_kubectl("create", "secret", "generic", "s", "-n", "typed",
                         "--from-literal=k=v\u00e9")
        self.run_kubectl("create", "configmap", "c", "-n", "typed", "--from-literal=a=1")
        self.run_kubectl("create", "clusterrole", "typed-metrics", "--verb=get",
                         "--non-resource-url=/metrics")
        self.run_kubectl("create", "clusterrolebinding", "typed-metrics",
                         "--clusterrole=typed-metrics", "--serviceaccount=typed:bot")
        self.run_kubectl("create", "role", "typed-pods", "-n", "typed", "--verb=list",
                         "--resource=pods")
        self.run_kubectl("create", "rolebinding", "typed-pods", "-n", "typed",
                         "--role=typed-pods", "--serviceaccount=typed:bot")
        get = self.s.request
        sec = get("GET", "/api/v1/namespaces/typed/secrets/s").json
        self.assertEqual(base64.b64decode(sec["data"]["k"]).decode(), "v\u00e9")
        self.assertEqual(sec["type"], "Opaque")
        self.assertEqual(get("GET", "/api/v1/namespaces/typed/configmaps/c").json["data"],
                         {"a": "1"})
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        self.assertEqual(get("GET", rbac + "/clusterroles/typed-metrics").json["rules"],
                         [{"verbs": ["get"], "nonResourceURLs": ["/metrics"]}])
        crb = get("GET", rbac + "/clusterrolebindings/typed-metrics").json
        self.assertEqual(crb["subjects"], [{"kind": "ServiceAccount", "name": "bot",
                                            "namespace": "typed"}])
        self.assertEqual(crb["roleRef"], {"apiGroup": "rbac.authorization.k8s.io",
                                          "kind": "ClusterRole", "name": "typed-metrics"})
        sa = "system:serviceaccount:typed:bot"

        def can_i(*args):
            p = self.run_kubectl("auth", "can-i", *args, check=False)
            return p.stdout.strip()

        self.assertEqual(can_i("get", "/metrics", "--as", sa), "yes")
        self.assertEqual(can_i("get", "/healthz", "--as", sa), "yes")  # system:discovery
        self.assertEqual(can_i("get", "/debug", "--as", sa), "no")
        self.assertEqual(can_i("list", "pods", "-n", "typed", "--as", sa), "yes")
        self.assertEqual(can_i("list", "pods", "-n", "default", "--as", sa), "no")
        self.assertEqual(can_i("delete", "pods", "-n", "typed", "--as", sa), "no")
        self.assertEqual(can_i("delete", "pods"), "yes")
        p = self.run_kubectl("get", "pods", "-n", "default", "--as", sa, check=False)
        self.assertIn('pods is forbidden: User "%s" cannot list resource "pods" in API group "" '
                      'in the namespace "default"' % sa, p.stderr)

    def test_label_and_delete(self):
        self.s.request("POST", "/api/v1/namespaces/lbl/pods", pod("l-0", "lbl"))
        self.run_kubectl("label", "pod", "l-0", "-n", "lbl", "pool=b")
        got = self.s.request("GET", "/api/v1/namespaces/lbl/pods/l-0").json
        self.assertEqual(got["metadata"]["labels"], {"pool": "b"})
        self.run_kubectl("delete", "pod", "l-0", "-n", "lbl")
        self.assertEqual(self.s.request("GET", "/api/v1/namespaces/lbl/pods/l-0").status, 404)


if __name__ == "__main__":
    unittest.main()
