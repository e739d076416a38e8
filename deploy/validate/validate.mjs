// Validates Kubernetes objects against the OpenAPI schemas of kubernetes-models (Kubernetes
// built-in kinds) and @kubernetes-models/prometheus-operator (PodMonitor, PrometheusRule, ...),
// at the versions pinned in package-lock.json. Used by deploy/check.sh.
//
//   node validate.mjs OBJECTS.json     (a JSON array of objects, e.g. rendered by kustomize)
//
// Prints one line per object; exit 0 when every object is valid, 1 otherwise (an object whose
// apiVersion/kind has no schema here is an error too, never silently accepted).
import { readFileSync } from "node:fs";

const groupModule = {
  "v1": "kubernetes-models/v1",
  "apps/v1": "kubernetes-models/apps/v1",
  "rbac.authorization.k8s.io/v1": "kubernetes-models/rbac.authorization.k8s.io/v1",
  "scheduling.k8s.io/v1": "kubernetes-models/scheduling.k8s.io/v1",
  "policy/v1": "kubernetes-models/policy/v1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs OBJECTS.json");
  process.exit(2);
}
const objects = JSON.parse(readFileSync(file, "utf8"));
let bad = 0;
for (const obj of objects) {
  const id = `${obj.kind}/${obj.metadata?.namespace ? obj.metadata.namespace + "/" : ""}${obj.metadata?.name}`;
  const mod = groupModule[obj.apiVersion];
  if (!mod) {
    console.log(`FAIL ${id}: no schema for apiVersion ${obj.apiVersion}`);
    bad++;
    continue;
  }
  const models = await import(mod);
  const Model = models[obj.kind];
  if (!Model) {
    console.log(`FAIL ${id}: no schema for kind ${obj.kind} in ${obj.apiVersion}`);
    bad++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`ok   ${id} (${obj.apiVersion})`);
  } catch (e) {
    console.log(`FAIL ${id}: ${String(e.message ?? e).replace(/\s+/g, " ")}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
