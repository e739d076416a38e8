#!/usr/bin/env bash
# The container image end to end (docs/deploy.md#tests). Root + real BPF + podman.
#
#   image_e2e.sh BUILD_DIR SOURCE_DIR
#
# 1. A Debian 12 base image from `debootstrap --variant=minbase bookworm` (the rootfs tarball is
#    cached in BUILD_DIR/podman; a clean build dir makes it), imported into a private podman
#    store under BUILD_DIR/podman (vfs, runc); the Dockerfile's `prebuilt` stage built on it
#    with BUILD_DIR/infertap (the `runtime` stage compiles from source instead: `make image`).
# 2. The agent runs in that image as the rendered DaemonSet says (test/e2e/image/podman_args.py:
#    hostPID, capabilities, seccomp profile from the ConfigMap, read-only hostPath mounts,
#    NODE_NAME, args), "in a pod": its own network namespace, the service-account files of the
#    DaemonSet's ServiceAccount, KUBERNETES_SERVICE_HOST/PORT of the fake API server, to which the
#    whole rendered deploy/daemonset was applied with kubectl.
# 3. Host traffic to a model-server pod (infertap-sim) is captured exactly: one record per request
#    with the status, sizes, tokens and attribution the client saw; /metrics, with the reader's
#    token from the token Secret (401 without), counts the same; /healthz and /readyz answer on
#    the pod IP; the agent's capabilities and seccomp mode are the DaemonSet's.
# 4. A real Prometheus scrapes the agent with that token; every panel query of the Grafana
#    dashboard (deploy/grafana/infertap.json) returns data, and names only exported metrics.
# 5. The ClusterRole: the (verb, group, resource) set of the agent's API calls in the fake
#    server's request log equals the rendered ClusterRole's rules, both ways.
#
# INFERTAP_E2E_IMAGE=localhost/infertap:0.1.0 runs it on an image already in the store (the
# from-source one of `make image`) instead of building the prebuilt stage.
#
# Exit 0 pass, 1 fail, 77 skip (not root / no BPF / no podman) — a fail under INFERTAP_REQUIRE_BPF=1.
set -u
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$2" && pwd)
INFERTAP=$BUILD/infertap
SIM=$BUILD/infertap-sim
FAKE=$SRC/test/fake_apiserver/fake_apiserver.py
T0=$(date +%s)

fail() {
  echo "FAIL: $*" >&2
  if [ -n "${CTR:-}" ]; then echo "--- agent log (tail):" >&2; $PODMAN logs --tail 30 "$CTR" >&2 2>&1; fi
  exit 1
}
ok() { echo "ok: $* [$(( $(date +%s) - T0 )) s]"; }
skip() {
  [ "${INFERTAP_REQUIRE_BPF:-}" = 1 ] && fail "INFERTAP_REQUIRE_BPF=1, but this test cannot run: $*"
  echo "SKIP: $*"
  exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip "no BTF (/sys/kernel/btf/vmlinux)"
for t in podman runc debootstrap; do command -v $t >/dev/null || skip "$t is not installed (scripts/install-deps.sh)"; done
for t in curl kubectl jq python3 ip base64 prometheus tar; do
  command -v $t >/dev/null || fail "missing tool $t (scripts/install-deps.sh)"
done
python3 -c 'import yaml' 2>/dev/null || fail "missing python3-yaml (scripts/install-deps.sh)"
[ -x "$INFERTAP" ] && [ -x "$SIM" ] || fail "no $INFERTAP or $SIM"

# A private podman store under the build dir (scripts/image.sh): never the machine's default one.
PODMAN=$(bash "$SRC/scripts/image.sh" podman "$BUILD") || fail "scripts/image.sh podman"
read -r -a ULIMITS < <(bash "$SRC/scripts/image.sh" ulimits "$BUILD")
W=$(mktemp -d /tmp/infertap-image-e2e.XXXXXX)
PIDS=()
CTR=""
NS=""
VETH=""
cleanup() {
  [ -n "$CTR" ] && $PODMAN rm -f -t 5 "$CTR" >/dev/null 2>&1
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  [ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
  [ -n "$VETH" ] && ip link del "$VETH" 2>/dev/null
  [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
to_json() { python3 -c 'import sys, yaml, json; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)'; }

# ---- 1. base image and the image ----
BASE=$(BASE='' bash "$SRC/scripts/image.sh" base "$BUILD" 2>"$W/base.err") || fail "base image: $(cat "$W/base.err")"
ok "base image $BASE (debootstrap --variant=minbase bookworm, cached in $BUILD/podman)"
if [ -n "${INFERTAP_E2E_IMAGE:-}" ]; then
  # An image built elsewhere in this store, e.g. `make image`'s localhost/infertap:0.1.0.
  IMAGE=$INFERTAP_E2E_IMAGE
  $PODMAN image exists "$IMAGE" || fail "no image $IMAGE in the store ($PODMAN images)"
  ok "image $IMAGE (INFERTAP_E2E_IMAGE; not built here)"
else
  mkdir -p "$W/ctx"
  cp "$INFERTAP" "$W/ctx/infertap"
  IMAGE=localhost/infertap:e2e
  $PODMAN build --target prebuilt --build-arg "BASE=$BASE" --isolation chroot --network host \
    "${ULIMITS[@]}" -f "$SRC/Dockerfile" -t "$IMAGE" "$W/ctx" >"$W/build.log" 2>&1 ||
    fail "podman build: $(tail -20 "$W/build.log")"
  ok "podman build --target prebuilt (Dockerfile) → $IMAGE"
fi
$PODMAN run --rm --network none "${ULIMITS[@]}" "$IMAGE" version >"$W/version" 2>&1 || fail "image: infertap version: $(cat "$W/version")"
grep -q "^infertap " "$W/version" || fail "image: $(cat "$W/version")"

# ---- 2. the pod network, the fake API server, the rendered deploy/ objects ----
kubectl kustomize "$SRC/deploy/daemonset" >"$W/rendered.yaml" 2>"$W/kustomize.err" || fail "kubectl kustomize: $(cat "$W/kustomize.err")"
to_json <"$W/rendered.yaml" >"$W/rendered.json"
python3 "$SRC/test/e2e/image/podman_args.py" "$W/rendered.json" "$W" n1 >"$W/podman-args" 2>"$W/podman-args.err" ||
  fail "the DaemonSet cannot be reproduced: $(cat "$W/podman-args.err")"
mapfile -t RUN_FLAGS < <(sed '/^--$/,$d' "$W/podman-args")
mapfile -t CTR_ARGS < <(sed '1,/^--$/d' "$W/podman-args")
ok "DaemonSet → podman: ${RUN_FLAGS[*]} -- ${CTR_ARGS[*]}"

S=$(( ($$ % 200) + 20 ))
NS="itimg-$$"
VETH="itimr$$"
ip netns add "$NS" || fail "ip netns add"
ip link add "$VETH" type veth peer name "itimp$$" || fail "veth"
ip link set "itimp$$" netns "$NS"
ip addr add "10.236.$S.1/24" dev "$VETH"
ip link set "$VETH" up
ip -n "$NS" addr add "10.236.$S.2/24" dev "itimp$$"
ip -n "$NS" addr add "10.236.$S.3/24" dev "itimp$$"
ip -n "$NS" link set "itimp$$" up
ip -n "$NS" link set lo up
ip -n "$NS" route add default via "10.236.$S.1"
HOST_IP=10.236.$S.1
AGENT_IP=10.236.$S.2
POD_IP=10.236.$S.3
python3 "$FAKE" --dir "$W/api" --bind "$HOST_IP" --bookmark-interval 1 2>"$W/fake.log" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$W/api/ready" ] && break; sleep 0.05; done
[ -s "$W/api/ready" ] || fail "fake API server not ready: $(cat "$W/fake.log")"
API=$(cat "$W/api/ready")
CTL=$(cat "$W/api/control")
ADMIN=$(cat "$W/api/admin.token")
export KUBECONFIG=$W/api/kubeconfig
kubectl apply -f "$W/rendered.yaml" >"$W/apply.out" 2>&1 || fail "kubectl apply -k deploy/daemonset: $(cat "$W/apply.out")"
ok "kubectl apply of the rendered deploy/daemonset: $(grep -c created "$W/apply.out") objects"
# The model server: a pool, an InferenceModel, a Ready pod at POD_IP:8000 (infertap-sim).
ip netns exec "$NS" "$SIM" --listen "$POD_IP:8000" --model llama-3-8b --tokens 4 >"$W/sim.log" 2>&1 &
PIDS+=($!)
kubectl apply -f - >"$W/kubectl.out" 2>&1 <<'YAML' || fail "kubectl apply pool: $(cat "$W/kubectl.out")"
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama, namespace: ml}
spec:
  selector: {matchLabels: {app: vllm}}
  targetPorts: [{number: 8000}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: chat, namespace: ml}
spec:
  modelName: chat
  poolRef: {name: llama}
  targetModels: [{name: llama-3-8b}]
---
apiVersion: v1
kind: Pod
metadata:
  name: vllm-0
  namespace: ml
  labels: {app: vllm, inference.networking.k8s.io/engine-type: vllm}
spec:
  nodeName: n1
  containers: [{name: vllm, image: vllm/vllm-openai}]
---
# What the kubelet would mount as the DaemonSet pod's service-account token.
apiVersion: v1
kind: Secret
metadata:
  name: infertap-e2e-token
  namespace: infertap-system
  annotations: {kubernetes.io/service-account.name: infertap}
type: kubernetes.io/service-account-token
YAML
c=$(curl -sS -o "$W/patch.out" -w '%{http_code}' --cacert "$W/api/ca.crt" -H "Authorization: Bearer $ADMIN" -X PATCH \
  -H 'Content-Type: application/merge-patch+json' \
  --data-binary "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$POD_IP\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" \
  "$API/api/v1/namespaces/ml/pods/vllm-0/status")
[ "$c" = 200 ] || fail "pod status patch: $c $(cat "$W/patch.out")"
SA=$W/sa
mkdir -p "$SA"
kubectl -n infertap-system get secret infertap-e2e-token -o jsonpath='{.data.token}' | base64 --decode >"$SA/token"
[ -s "$SA/token" ] || fail "no token for the infertap ServiceAccount"
cp "$W/api/ca.crt" "$SA/ca.crt"
printf infertap-system >"$SA/namespace"
TOKEN=$(kubectl -n infertap-system get secret inference-gateway-sa-metrics-reader-secret -o jsonpath='{.data.token}' | base64 --decode)
[ -n "$TOKEN" ] || fail "the reader's token Secret has no token"
printf '%s' "$TOKEN" >"$W/reader.token"
grep -q listening "$W/sim.log" || sleep 0.5
grep -q listening "$W/sim.log" || fail "sim did not start: $(cat "$W/sim.log")"

# ---- 3. the agent in the image, as the DaemonSet runs it ----
CTR=infertap-e2e-$$
APORT=${API##*:}
$PODMAN run -d --name "$CTR" --network "ns:/run/netns/$NS" \
  "${ULIMITS[@]}" "${RUN_FLAGS[@]}" \
  --volume "$SA:/var/run/secrets/kubernetes.io/serviceaccount:ro" \
  --env "KUBERNETES_SERVICE_HOST=$HOST_IP" --env "KUBERNETES_SERVICE_PORT=$APORT" \
  "$IMAGE" "${CTR_ARGS[@]}" >"$W/run.out" 2>&1 || fail "podman run: $(cat "$W/run.out")"
M=http://$AGENT_IP:9090
for _ in $(seq 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$M/readyz")" = 200 ] && break
  [ "$($PODMAN inspect -f '{{.State.Running}}' "$CTR" 2>/dev/null)" = true ] || fail "the agent's container exited"
  sleep 0.1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$M/readyz")" = 200 ] || fail "agent not ready on $M/readyz in 30 s"
[ "$(curl -s -o /dev/null -w '%{http_code}' "$M/healthz")" = 200 ] || fail "/healthz"
ok "agent in the container: /healthz and /readyz 200 on the pod IP ($M, the probes' port 'metrics')"
$PODMAN logs "$CTR" >"$W/agent.log" 2>&1
grep -q "mode: kubernetes (running in a pod" "$W/agent.log" || fail "not in Kubernetes mode: $(head -20 "$W/agent.log")"
grep -q "metrics auth: kubernetes" "$W/agent.log" || fail "metrics auth is not kubernetes"
# The process' capabilities and seccomp mode are the DaemonSet's: CapEff = BPF|PERFMON|SYS_PTRACE.
APID=$($PODMAN inspect -f '{{.State.Pid}}' "$CTR")
capeff=$(awk '/^CapEff/ {print $2}' "/proc/$APID/status")
want=0
for cap in $(jq -r '.[] | select(.kind == "DaemonSet") | .spec.template.spec.containers[0].securityContext.capabilities.add[]' "$W/rendered.json"); do
  case $cap in BPF) b=39 ;; PERFMON) b=38 ;; SYS_PTRACE) b=19 ;; SYS_RESOURCE) b=24 ;; SYS_ADMIN) b=21 ;; NET_ADMIN) b=12 ;; *) fail "unknown cap $cap" ;; esac
  want=$(( want | (1 << b) ))
done
[ "$(( 16#$capeff ))" = "$want" ] || fail "agent CapEff $capeff, want $(printf '%016x' $want)"
[ "$(awk '/^Seccomp:/ {print $2}' "/proc/$APID/status")" = 2 ] || fail "agent not under a seccomp filter"
[ "$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$APID/status")" = 1 ] || fail "NoNewPrivs not set"
$PODMAN exec "$CTR" unshare -U true >"$W/unshare.out" 2>&1 && fail "unshare(CLONE_NEWUSER) allowed in the container: the seccomp profile is not applied"
ok "agent pid $APID (host PID namespace): CapEff $capeff (the DaemonSet's capabilities only), seccomp filter on, no_new_privs; unshare refused"

# Topology from the API server with the agent's own service account.
IPORT=9091
state() { ip netns exec "$NS" curl -s "http://127.0.0.1:$IPORT/v1/state"; }
for _ in $(seq 100); do [ "$(state | jq -c .endpoints)" = "[\"$POD_IP:8000\"]" ] && break; sleep 0.1; done
[ "$(state | jq -c .endpoints)" = "[\"$POD_IP:8000\"]" ] || fail "endpoints: $(state | jq -c '{endpoints, topology}')"
ok "the agent traces the pod $POD_IP:8000 (topology from the fake API server)"
ip netns exec "$NS" curl -sN "http://127.0.0.1:$IPORT/v1/records" >"$W/records.jsonl" 2>/dev/null &
PIDS+=($!)

# A real Prometheus scraping the agent with the reader's token, as the PodMonitor does.
PPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$W/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
- job_name: infertap
  authorization:
    credentials_file: $W/reader.token
  static_configs:
  - targets: ['$AGENT_IP:9090']
YAML
prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/tsdb" \
  --web.listen-address="127.0.0.1:$PPORT" >"$W/prometheus.log" 2>&1 &
PIDS+=($!)
sleep 0.3

# ---- traffic from the host: the client's own view of each request, compared with the records ----
N_OK=6
N_STREAM=3
N_ERR=2
send() {  # i stream? extra-header → appends "status bytes_sent bytes_received" to $W/sent
  local body hdr=()
  body="{\"model\":\"llama-3-8b\",\"messages\":[{\"role\":\"user\",\"content\":\"request $1\"}],\"max_tokens\":$(( 3 + $1 % 4 ))$2}"
  [ -n "$3" ] && hdr=(-H "$3")
  curl -s -o "$W/resp.$1" -w "%{http_code} %{size_upload} %{size_download}\n" "http://$POD_IP:8000/v1/chat/completions" \
    -H 'Content-Type: application/json' "${hdr[@]}" -d "$body" >>"$W/sent"
}
: >"$W/sent"
i=0
for _ in $(seq $N_OK); do i=$((i + 1)); send $i "" ""; done
for _ in $(seq $N_STREAM); do i=$((i + 1)); send $i ',"stream":true,"stream_options":{"include_usage":true}' 'x-sim-itl-ms: 5'; done
for _ in $(seq $N_ERR); do i=$((i + 1)); send $i "" 'x-sim-status: 503'; done
N=$i
# A pool scrape error: the model server's /metrics unparsable for a moment, then fine again.
curl -s -o /dev/null -X POST --data-binary garbage "http://$POD_IP:8000/sim/metrics-mode"
sleep 2.5
curl -s -o /dev/null -X POST --data-binary ok "http://$POD_IP:8000/sim/metrics-mode"
# A parse error: bytes that are not HTTP on the traced endpoint.
exec 3<>"/dev/tcp/$POD_IP/8000" && printf 'NOT HTTP AT ALL\r\n\r\n' >&3 && sleep 0.3 && exec 3>&-
for _ in $(seq 50); do [ "$(grep -c . "$W/records.jsonl")" -ge "$N" ] && break; sleep 0.1; done
sleep 0.5
[ "$(grep -c . "$W/records.jsonl")" = "$N" ] || fail "$(grep -c . "$W/records.jsonl") records for $N requests: $(cat "$W/records.jsonl")"
# Record k ↔ request k (one connection at a time, completion order = send order).
j=0
while read -r status up _down; do
  j=$((j + 1))
  r=$(sed -n "${j}p" "$W/records.jsonl")
  resp_body=$(wc -c <"$W/resp.$j")
  req_body=$up
  echo "$r" | jq -e --argjson s "$status" --argjson q "$req_body" --argjson b "$resp_body" \
    '.status == $s and .request_bytes == $q and .response_bytes == $b and .pool == "llama" and .namespace == "ml"
     and .pod == "vllm-0" and .node == "n1" and .model_name == "chat" and .target_model_name == "llama-3-8b"' >/dev/null ||
    fail "request $j (status $status, sent $req_body B, got $resp_body B) ≠ record $r"
  if [ "$status" = 200 ]; then
    toks=$(( 3 + j % 4 ))
    echo "$r" | jq -e --argjson t "$toks" '.output_tokens == $t and .error_code == ""' >/dev/null || fail "request $j: want $toks tokens: $r"
  else
    echo "$r" | jq -e '.error_code == "ServiceUnavailable"' >/dev/null || fail "request $j: want ServiceUnavailable: $r"
  fi
done <"$W/sent"
[ "$(jq -s '[.[] | select(.stream)] | length' "$W/records.jsonl")" = "$N_STREAM" ] || fail "stream records"
ok "$N requests from the host ($N_OK plain, $N_STREAM streamed, $N_ERR × 503): $N records, each with the client's status, body sizes, tokens, pool/pod/model"

# /metrics with the reader's token (the README's curl), 401 without.
[ "$(curl -s -o /dev/null -w '%{http_code}' "$M/metrics")" = 401 ] || fail "/metrics without a token is not 401"
curl -s -H "Authorization: Bearer $TOKEN" "$M/metrics" >"$W/metrics" || fail "curl /metrics with the token"
got=$(awk '/^inference_model_request_total\{.*model_name="chat"/ {s += $NF} END {print s + 0}' "$W/metrics")
[ "$got" = "$N" ] || fail "inference_model_request_total $got, want $N"
got=$(awk '/^inference_model_request_error_total\{.*error_code="ServiceUnavailable"/ {s += $NF} END {print s + 0}' "$W/metrics")
[ "$got" = "$N_ERR" ] || fail "error_total $got, want $N_ERR"
grep -q '^infertap_parse_errors_total{' "$W/metrics" || fail "the non-HTTP bytes were not counted as a parse error"
ok "curl -H \"Authorization: Bearer \$TOKEN\" $M/metrics: request_total $N, error_total{ServiceUnavailable} $N_ERR (401 without the token)"

# ---- 4. Prometheus and the dashboard ----
pq() { curl -s "http://127.0.0.1:$PPORT/api/v1/query" --data-urlencode "query=$1"; }
for _ in $(seq 150); do
  [ "$(pq 'sum(inference_model_request_total)' | jq -r '.data.result[0].value[1] // empty')" = "$N" ] &&
    [ -n "$(pq 'inference_pool_average_kv_cache_utilization' | jq -r '.data.result[0].value[1] // empty')" ] && break
  sleep 0.2
done
[ "$(pq 'sum(inference_model_request_total)' | jq -r '.data.result[0].value[1] // empty')" = "$N" ] ||
  fail "Prometheus: $(pq 'sum(inference_model_request_total)'); targets $(curl -s "http://127.0.0.1:$PPORT/api/v1/targets" | jq -c '[.data.activeTargets[] | {health, lastError}]')"
ok "Prometheus scrapes the agent with credentials_file (the reader's token): sum(request_total) = $N"
sleep 2  # a few more scrapes: rates need two samples of every series
python3 - "$SRC/deploy/grafana/infertap.json" "$W/metrics" "$PPORT" >"$W/dashboard.out" 2>&1 <<'PY' || fail "dashboard: $(cat "$W/dashboard.out")"
import json, re, sys, urllib.parse, urllib.request
dash = json.load(open(sys.argv[1]))
exported = set()
for line in open(sys.argv[2]):
    m = re.match(r"# TYPE (\S+) (\S+)", line)
    if m:
        name, kind = m.groups()
        exported.add(name)
        if kind == "histogram":
            exported |= {name + "_bucket", name + "_sum", name + "_count"}
exported.add("up")
panels = []
def walk(ps):
    for p in ps:
        if p.get("type") == "row":
            walk(p.get("panels", []))
        else:
            panels.append(p)
walk(dash["panels"])
subst = {"$__rate_interval": "30s", "$pool": ".*", "$model": ".*", "$pod": ".*"}
bad, n = [], 0
for p in panels:
    targets = p.get("targets", [])
    if not targets:
        bad.append("panel %r has no query" % p.get("title"))
    for t in targets:
        expr = t["expr"]
        q = expr
        for k, v in subst.items():
            q = q.replace(k, v)
        if "$" in q:
            bad.append("panel %r: unknown variable in %s" % (p["title"], expr))
            continue
        names = set(re.findall(r"\b((?:inference|infertap)_[a-z_]+)\b", q))
        for name in names - exported:
            bad.append("panel %r names %s, which the agent does not export" % (p["title"], name))
        url = "http://127.0.0.1:%s/api/v1/query?%s" % (sys.argv[3], urllib.parse.urlencode({"query": q}))
        r = json.load(urllib.request.urlopen(url))
        n += 1
        if r.get("status") != "success":
            bad.append("panel %r: %s: %s" % (p["title"], q, r.get("error")))
        elif not r["data"]["result"]:
            bad.append("panel %r: no data for %s" % (p["title"], q))
if bad:
    print("\n".join(bad))
    sys.exit(1)
print("%d panels, %d queries, all with data" % (len(panels), n))
PY
ok "Grafana dashboard: $(cat "$W/dashboard.out") from Prometheus; every metric it names is exported"

# ---- 5. the ClusterRole is exactly what the agent used ----
curl -sS --cacert "$W/api/ca.crt" -H "Authorization: Bearer $ADMIN" "$CTL/fake/requests" >"$W/requests.json"
python3 - "$W/requests.json" "$W/rendered.json" >"$W/rbac.out" 2>&1 <<'PY' || fail "ClusterRole: $(cat "$W/rbac.out")"
import json, re, sys
reqs = json.load(open(sys.argv[1]))["requests"]
objs = json.load(open(sys.argv[2]))
user = "system:serviceaccount:infertap-system:infertap"
used, denied = set(), []
for r in reqs:
    if r.get("user") != user or r["path"].startswith("/fake/"):
        continue
    if r["path"] == "/version":
        continue  # the recovery probe: granted to every authenticated user (system:public-info-viewer)
    m = re.match(r"^/api/v1/(?:namespaces/[^/]+/)?([a-z]+)(/[^/]+)?(/[a-z]+)?$", r["path"]) or None
    g = ""
    if m is None:
        m = re.match(r"^/apis/([^/]+)/[^/]+/(?:namespaces/[^/]+/)?([a-z]+)(/[^/]+)?(/[a-z]+)?$", r["path"])
        if m is None:
            print("unexpected path %s" % r["path"]); sys.exit(1)
        g, res, name = m.group(1), m.group(2), m.group(3)
    else:
        res, name = m.group(1), m.group(2)
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(r["method"])
    if verb is None:
        verb = "watch" if r.get("watch") else ("get" if name else "list")
    used.add((verb, g, res))
    if r.get("status") == 403:
        denied.append(r["path"])
role = [o for o in objs if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "infertap"][0]
granted = set()
for rule in role["rules"]:
    if "nonResourceURLs" in rule:
        print("the agent's ClusterRole has nonResourceURLs"); sys.exit(1)
    for g in rule["apiGroups"]:
        for res in rule["resources"]:
            for v in rule["verbs"]:
                granted.add((v, g, res))
fmt = lambda s: ", ".join("%s %s/%s" % (v, g or "core", r) for v, g, r in sorted(s))
if denied:
    print("403 for the agent: %s" % denied); sys.exit(1)
if used - granted:
    print("used but not in the ClusterRole: " + fmt(used - granted)); sys.exit(1)
if granted - used:
    print("in the ClusterRole but never used: " + fmt(granted - used)); sys.exit(1)
print("%d permissions: %s" % (len(used), fmt(used)))
PY
ok "ClusterRole infertap = the agent's API calls in the request log, both ways: $(cat "$W/rbac.out")"

$PODMAN stop -t 10 "$CTR" >/dev/null 2>&1 || fail "podman stop"
rc=$($PODMAN inspect -f '{{.State.ExitCode}}' "$CTR")
[ "$rc" = 0 ] || fail "agent exit $rc after SIGTERM"
ok "SIGTERM (podman stop): agent exit 0"
$PODMAN rm "$CTR" >/dev/null 2>&1 && CTR=""
# Each run tags a new image; the previous one's layers would pile up in the store (vfs copies).
$PODMAN image prune -f >/dev/null 2>&1
echo PASS
