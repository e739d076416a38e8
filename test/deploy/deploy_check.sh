#!/usr/bin/env bash
# The deploy/ checks of `make test` (docs/deploy.md#tests). No root, no BPF:
#
#   deploy_check.sh BUILD_DIR SOURCE_DIR
#
# 1. `kubectl kustomize` renders deploy/daemonset and every overlay under deploy/overlays;
# 2. every rendered object is valid against the Kubernetes / Prometheus Operator OpenAPI schemas
#    of kubernetes-models (deploy/validate, pinned by package-lock.json);
# 3. every rendered object is accepted by the fake API server (`kubectl apply`, the server's
#    strict field validation where it has a schema) and reads back;
# 4. the DaemonSet's container args (base and every overlay) are `run` and flags that
#    `infertap run --help` lists; the cgroup-backend overlay adds CAP_NET_ADMIN, the host's
#    /sys/fs/cgroup read-only at --cgroup-root and --capture-backend=cgroup, the base none of it;
# 5. the PrometheusRule's spec, extracted from the rendered object, passes `promtool check rules`
#    and `promtool test rules` (test/deploy/rules_test.yaml).
# (The ClusterRole is checked against the API calls the agent made in test/e2e/image_e2e.sh.)
#
# Exit 0 pass, 1 fail.
set -u
BUILD=$1
SRC=$2
INFERTAP=$BUILD/infertap

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
for t in kubectl node promtool python3 curl; do
  command -v $t >/dev/null || fail "missing tool $t (scripts/install-deps.sh)"
done
python3 -c 'import yaml' 2>/dev/null || fail "missing python3-yaml (scripts/install-deps.sh)"
[ -f "$SRC/deploy/validate/node_modules/kubernetes-models/package.json" ] ||
  fail "deploy/validate/node_modules missing (scripts/install-deps.sh runs npm ci there)"
[ -x "$INFERTAP" ] || fail "no $INFERTAP"

W=$(mktemp -d /tmp/infertap-deploy-check.XXXXXX)
FAKE_PID=""
cleanup() {
  [ -n "$FAKE_PID" ] && { kill "$FAKE_PID" 2>/dev/null; wait "$FAKE_PID" 2>/dev/null; }
  [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT

to_json() { python3 -c 'import sys, yaml, json; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)'; }

# ---- 1, 2: render and validate ----
dirs=("$SRC/deploy/daemonset")
for o in "$SRC"/deploy/overlays/*/; do dirs+=("${o%/}"); done
for d in "${dirs[@]}"; do
  name=$(basename "$d")
  kubectl kustomize "$d" >"$W/$name.yaml" 2>"$W/$name.err" || fail "kubectl kustomize $d: $(cat "$W/$name.err")"
  to_json <"$W/$name.yaml" >"$W/$name.json" || fail "rendered $d is not YAML"
  n=$(jq length "$W/$name.json")
  [ "$n" -gt 0 ] || fail "$d renders nothing"
  node "$SRC/deploy/validate/validate.mjs" "$W/$name.json" >"$W/$name.validate" 2>&1 ||
    fail "OpenAPI validation of $d:
$(grep -v '^ok' "$W/$name.validate")"
  ok "kubectl kustomize ${d#"$SRC"/}: $n objects, all valid against the OpenAPI schemas ($(jq -r '[.[].kind] | unique | join(", ")' "$W/$name.json"))"
done
BASE_JSON=$W/daemonset.json

# The validator itself must refuse a wrong object (else step 2 proves nothing).
jq '[.[] | select(.kind == "DaemonSet") | .spec.template.spec.containers[0].ports[0].containerPort = "nine"]' \
  "$BASE_JSON" >"$W/bad.json"
node "$SRC/deploy/validate/validate.mjs" "$W/bad.json" >/dev/null 2>&1 && fail "the validator accepted containerPort \"nine\""
ok "the validator refuses a DaemonSet with containerPort \"nine\""

# ---- 3: the fake API server accepts every object ----
python3 "$SRC/test/fake_apiserver/fake_apiserver.py" --dir "$W/api" 2>"$W/fake.log" &
FAKE_PID=$!
for _ in $(seq 200); do [ -s "$W/api/ready" ] && break; sleep 0.05; done
[ -s "$W/api/ready" ] || fail "fake API server not ready: $(cat "$W/fake.log")"
export KUBECONFIG=$W/api/kubeconfig
control() { curl -sS -o /dev/null -w '%{http_code}' --cacert "$W/api/ca.crt" -H "Authorization: Bearer $(cat "$W/api/admin.token")" -X POST "$(cat "$W/api/control")$1"; }
for d in "${dirs[@]}"; do
  name=$(basename "$d")
  # That overlay is for clusters without the Prometheus Operator: apply it to a server without
  # the monitoring.coreos.com group, where the base itself must fail.
  if [ "$name" = no-prometheus-operator ]; then
    [ "$(control '/fake/disable-group?gv=monitoring.coreos.com/v1')" = 200 ] || fail "disable monitoring.coreos.com/v1"
    kubectl apply -k "$SRC/deploy/daemonset" >"$W/apply-base.out" 2>&1 && fail "the base applied without the Prometheus Operator's CRDs"
    # kubectl says "no matches for kind" from fresh discovery, a 404 with its cached discovery.
    grep -qE 'no matches for kind "(PodMonitor|PrometheusRule)"|could not find the requested resource' "$W/apply-base.out" ||
      fail "base without the CRDs: $(cat "$W/apply-base.out")"
  fi
  kubectl apply -k "$d" >"$W/apply.out" 2>&1 || fail "kubectl apply -k $d: $(cat "$W/apply.out")"
  applied=$(grep -cE ' (created|configured|unchanged)$' "$W/apply.out")
  [ "$applied" = "$(jq length "$W/$name.json")" ] || fail "kubectl apply ($name) applied $applied objects: $(cat "$W/apply.out")"
  # Each object reads back from the server.
  while read -r kind ns obj; do
    if [ "$ns" = - ]; then kubectl get "$kind" "$obj" -o name >/dev/null 2>&1 || fail "$kind $obj not on the server"
    else kubectl -n "$ns" get "$kind" "$obj" -o name >/dev/null 2>&1 || fail "$kind $ns/$obj not on the server"; fi
  done < <(jq -r '.[] | "\(.kind | ascii_downcase) \(.metadata.namespace // "-") \(.metadata.name)"' "$W/$name.json")
  # What the server holds is what was rendered (an overlay's change did reach it).
  want=$(jq -c '.[] | select(.kind == "DaemonSet") | .spec.template.spec.containers | map({name, securityContext, args})' "$W/$name.json")
  got=$(kubectl -n infertap-system get ds infertap -o json | jq -c '.spec.template.spec.containers | map({name, securityContext, args})')
  [ "$want" = "$got" ] || fail "DaemonSet on the server after apply -k $name: $got, rendered $want"
  ok "kubectl apply -k ${d#"$SRC"/} against the fake API server: $applied objects accepted and read back"
  if [ "$name" = no-prometheus-operator ]; then
    [ "$(control '/fake/enable-group?gv=monitoring.coreos.com/v1')" = 200 ] || fail "enable monitoring.coreos.com/v1"
    ok "without the monitoring.coreos.com API the base fails and this overlay applies"
  fi
done
# The token controller filled the reader's Secret, as the README's scrape example expects.
tok=$(kubectl -n infertap-system get secret inference-gateway-sa-metrics-reader-secret -o jsonpath='{.data.token}' | base64 --decode)
[ -n "$tok" ] || fail "the metrics reader Secret has no token"
ok "the reader's token Secret has a token (README: TOKEN=\$(kubectl ... get secret ... -o jsonpath='{.data.token}'))"

# ---- 4: DaemonSet args are flags `infertap run` accepts ----
"$INFERTAP" run --help >"$W/run-help" 2>&1 || fail "infertap run --help failed"
for d in "${dirs[@]}"; do
  name=$(basename "$d")
  args=$(jq -r '.[] | select(.kind == "DaemonSet") | .spec.template.spec.containers[] | select(.name == "infertap") | .args[]' "$W/$name.json")
  [ "$(echo "$args" | head -1)" = run ] || fail "$name: the DaemonSet's first arg is not 'run': $args"
  for a in $(echo "$args" | tail -n +2); do
    case $a in
      --*) flag=${a%%=*}; grep -qE "^ +(-[a-zA-Z],)?$flag([ ,=]|$)" "$W/run-help" || fail "$name: DaemonSet arg $a: $flag is not a flag of 'infertap run' (infertap run --help)" ;;
      *) fail "$name: DaemonSet arg '$a' is not a --flag=value" ;;
    esac
  done
  ok "$name DaemonSet args: $(echo $args) — every flag is in 'infertap run --help'"
done
# The cgroup-backend overlay opts in to the cgroup backend; the base keeps the syscall backend
# without CAP_NET_ADMIN (docs/capture-backends.md#decision).
container() { jq -c '.[] | select(.kind == "DaemonSet") | .spec.template.spec as $s | $s.containers[] | select(.name == "infertap") | {args, caps: .securityContext.capabilities.add, mounts: .volumeMounts, volumes: $s.volumes}' "$W/$1.json"; }
base=$(container daemonset)
echo "$base" | jq -e '(.caps | index("NET_ADMIN") | not) and ([.args[] | select(startswith("--capture-backend") or startswith("--cgroup-root"))] == [])' >/dev/null ||
  fail "the base DaemonSet is not the syscall backend without NET_ADMIN: $base"
cg=$(container cgroup-backend)
echo "$cg" | jq -e '
  (.caps | index("NET_ADMIN")) and (.caps | index("BPF")) and
  (.args | index("--capture-backend=cgroup")) and (.args | index("--cgroup-root=/host/sys/fs/cgroup")) and
  ([.mounts[] | select(.mountPath == "/host/sys/fs/cgroup" and .readOnly == true) | .name] as $m |
   [.volumes[] | select(.hostPath.path == "/sys/fs/cgroup") | .name] as $v | ($m | length) == 1 and $m == $v)' >/dev/null ||
  fail "the cgroup-backend overlay: want NET_ADMIN, --capture-backend=cgroup, --cgroup-root=/host/sys/fs/cgroup on a read-only hostPath /sys/fs/cgroup: $cg"
ok "cgroup-backend overlay: +NET_ADMIN, the host's /sys/fs/cgroup read-only at /host/sys/fs/cgroup = --cgroup-root, --capture-backend=cgroup; the base stays syscall without NET_ADMIN"
# The checker must fail on a wrong flag too.
grep -qE "^ +--metrics-adress([ ,=]|$)" "$W/run-help" && fail "flag check accepts a misspelt flag"

# ---- 5: PrometheusRule → promtool ----
jq '.[] | select(.kind == "PrometheusRule") | .spec' "$BASE_JSON" >"$W/spec.json"
[ -s "$W/spec.json" ] || fail "no PrometheusRule rendered"
python3 -c 'import sys, json, yaml; yaml.safe_dump(json.load(open(sys.argv[1])), open(sys.argv[2], "w"), sort_keys=False)' \
  "$W/spec.json" "$W/infertap-rules.yaml"
promtool check rules "$W/infertap-rules.yaml" >"$W/promtool.out" 2>&1 || fail "promtool check rules: $(cat "$W/promtool.out")"
ok "promtool check rules: $(grep -o '[0-9]* rules found' "$W/promtool.out")"
cp "$SRC/test/deploy/rules_test.yaml" "$W/"
promtool test rules "$W/rules_test.yaml" >"$W/promtool-test.out" 2>&1 || fail "promtool test rules: $(cat "$W/promtool-test.out")"
ok "promtool test rules: pool-wide weighted averages and every alert ($(grep -c 'alertname:' "$SRC/test/deploy/rules_test.yaml") alert cases)"
alerts=$(jq -r '[.groups[].rules[] | select(.alert) | .alert] | sort | join(" ")' "$W/spec.json")
tested=$(grep -oE 'alertname: [A-Za-z]+' "$SRC/test/deploy/rules_test.yaml" | awk '{print $2}' | sort -u | tr '\n' ' ' | sed 's/ $//')
[ "$alerts" = "$tested" ] || fail "alerts without a promtool test: rules '$alerts', tested '$tested'"
ok "every alert has a promtool test: $alerts"
echo PASS
