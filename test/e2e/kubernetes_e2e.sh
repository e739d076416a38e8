#!/usr/bin/env bash
# Kubernetes mode end to end (docs/kubernetes.md, docs/testing.md). Root + real BPF.
#
#   kubernetes_e2e.sh BUILD_DIR SOURCE_DIR auth
#     `infertap run --kubeconfig ... --metrics-auth kubernetes` against the fake API server
#     (test/fake_apiserver); the upstream scrape setup (ClusterRole nonResourceURLs /metrics,
#     ServiceAccount, token Secret, ClusterRoleBinding) applied with kubectl; then
#     `curl -H "Authorization: Bearer $TOKEN"`: no token 401, bad token 401, a token without the
#     role 403, with it 200, API stopped → 500 for a token not yet reviewed; /healthz and
#     /readyz stay open and ready while the API is down.
#
#   kubernetes_e2e.sh BUILD_DIR SOURCE_DIR topology
#     The fake API server in the root namespace bound to the root end of a veth; infertap-sim in
#     a network namespace as the pod IP; `infertap run --kubeconfig ... --node n1` tracing it.
#     A pod is created, made Ready (status patch), relabelled out of the pool, back in, and
#     deleted while a background load flows: records carry pool/namespace/pod and the model_name
#     of an InferenceModel; the kernel endpoint set follows each change within 1 s; a stream open
#     across the relabel keeps its attribution; pool gauges follow the pod. Then two pools named
#     llama in two namespaces on the node: labels ml/llama and ml2/llama, no duplicate series.
#
#   kubernetes_e2e.sh BUILD_DIR SOURCE_DIR incluster
#     "In a pod": the service-account files at /run/secrets/kubernetes.io/serviceaccount (a tmpfs
#     in a private mount namespace), KUBERNETES_SERVICE_HOST/PORT and NODE_NAME, and no mode or
#     auth flags: Kubernetes mode and --metrics-auth auto → kubernetes, with the agent's own
#     service account (the ClusterRole docs/kubernetes.md lists + system:auth-delegator).
#
#   kubernetes_e2e.sh BUILD_DIR SOURCE_DIR twonode
#     Two "nodes" (network namespaces n1, n2, each with its own agent started there with
#     --node n1 / --node n2 and --metrics-auth kubernetes), the fake API server in the root
#     namespace on the root end of n1's veth (n2 reaches it through its default route), one
#     infertap-sim per pod IP. Each request is counted on exactly one node and the sum over both
#     agents equals what the clients sent; a pod created later on n2 is picked up by n2's agent
#     only; a real Prometheus scrapes both agents with `authorization: credentials_file` (the
#     reader service account's token) and sums them.
#
#   kubernetes_e2e.sh BUILD_DIR SOURCE_DIR cgroup
#     The cgroup backend in Kubernetes mode (docs/kubernetes.md "The cgroup backend"): `infertap
#     run --kubeconfig ... --node n1 --capture-backend cgroup --cgroup-root <the cgroup v2 mount>`.
#     Pod vllm-0's cgroup is made where a systemd kubelet puts a Burstable pod
#     (kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice, uid from the
#     API), infertap-sim started inside it in a network namespace as the pod IP: attached, records
#     and request_total exact. Pod vllm-1 is Ready before its cgroup exists (cgroupfs spelling,
#     kubepods one level down, as the kubelet's --cgroup-root puts it): "cgroup not found", a
#     server outside any pod cgroup on its IP is not captured; its cgroup is created later and
#     picked up by the periodic retry, its requests exact. vllm-0 deleted → detached (/v1/state,
#     `bpftool cgroup show`), its open stream ended at once; vllm-1's cgroup removed under it
#     (pod torn down) → detached cleanly; at the end nothing is attached and every cgroup the
#     test made is gone.
#
# Exit 0 pass, 1 fail, 77 skip (not root / no BPF / missing tool).
set -u
BUILD=$1
SRC=$2
PHASE=$3
INFERTAP=$BUILD/infertap
SIM=$BUILD/infertap-sim
FAKE=$SRC/test/fake_apiserver/fake_apiserver.py

fail() {
  echo "FAIL: $*" >&2
  [ -n "${AGENT_LOG:-}" ] && [ -f "$AGENT_LOG" ] && { echo "--- agent log (tail):" >&2; tail -30 "$AGENT_LOG" >&2; }
  exit 1
}
ok() { echo "ok: $*"; }

# A pod's chat endpoint, N sequential requests: prints how many got a 200 (twonode, cgroup).
send_to() {  # IP N
  for _ in $(seq "$2"); do
    curl -s -o /dev/null -w '%{http_code}\n' "http://$1:8000/v1/chat/completions" \
      -H 'Content-Type: application/json' \
      -d '{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
  done | grep -c '^200$'
}

skip() {  # INFERTAP_REQUIRE_BPF=1 (what .ci/run sets): every test must run
  [ "${INFERTAP_REQUIRE_BPF:-}" = 1 ] && fail "INFERTAP_REQUIRE_BPF=1, but this test cannot run: $*"
  echo "SKIP: $*"
  exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip "no BTF (/sys/kernel/btf/vmlinux)"
for t in curl kubectl jq python3 ip openssl base64; do
  command -v $t >/dev/null || fail "missing tool $t (scripts/install-deps.sh)"
done
[ -x "$INFERTAP" ] || fail "no $INFERTAP"

W=$(mktemp -d /tmp/infertap-k8s-e2e.XXXXXX)
PIDS=()
NS=""
VETH=""
EXTRA_NS=()
EXTRA_LINKS=()
CGROUPS_MADE=()  # cgroup directories this test created, parents first
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  # Deepest first; a process still inside (it should not be) is killed so the cgroup can go.
  for ((i = ${#CGROUPS_MADE[@]} - 1; i >= 0; i--)); do
    c=${CGROUPS_MADE[$i]}
    [ -d "$c" ] || continue
    for _ in $(seq 50); do
      [ -s "$c/cgroup.procs" ] && xargs -r kill -9 <"$c/cgroup.procs" 2>/dev/null
      rmdir "$c" 2>/dev/null && break
      sleep 0.05
    done
    [ -d "$c" ] && echo "could not remove test cgroup $c" >&2
  done
  [ -n "$NS" ] && ip netns del "$NS" 2>/dev/null
  [ -n "$VETH" ] && ip link del "$VETH" 2>/dev/null
  for n in "${EXTRA_NS[@]}"; do ip netns del "$n" 2>/dev/null; done
  for l in "${EXTRA_LINKS[@]}"; do ip link del "$l" 2>/dev/null; done
  [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

# ---- the fake API server ----
BIND=127.0.0.1
if [ "$PHASE" = cgroup ]; then
  CGROOT=""
  for c in /sys/fs/cgroup/unified /sys/fs/cgroup; do
    [ "$(stat -f -c %T "$c" 2>/dev/null)" = cgroup2fs ] && { CGROOT=$c; break; }
  done
  [ -n "$CGROOT" ] || skip "no cgroup v2 hierarchy mounted"
  command -v bpftool >/dev/null || fail "missing tool bpftool (scripts/install-deps.sh)"
fi
if [ "$PHASE" = topology ] || [ "$PHASE" = cgroup ]; then
  S=$(( ($$ % 200) + 20 ))
  NS="itk8s-$$"
  VETH="itk8r$$"
  ip netns add "$NS" || fail "ip netns add"
  ip link add "$VETH" type veth peer name "itk8p$$" || fail "veth"
  ip link set "itk8p$$" netns "$NS"
  ip addr add "10.232.$S.1/24" dev "$VETH"
  ip link set "$VETH" up
  ip -n "$NS" addr add "10.232.$S.2/24" dev "itk8p$$"
  ip -n "$NS" link set "itk8p$$" up
  ip -n "$NS" link set lo up
  BIND=10.232.$S.1
  POD_IP=10.232.$S.2
  POD_IP2=10.232.$S.3
  ip -n "$NS" addr add "$POD_IP2/24" dev "itk8p$$"
elif [ "$PHASE" = twonode ]; then
  S=$(( ($$ % 200) + 20 ))
  for i in 1 2; do
    n="itk8n$i-$$"
    EXTRA_NS+=("$n")
    EXTRA_LINKS+=("itk8n${i}r$$")
    ip netns add "$n" || fail "ip netns add $n"
    ip link add "itk8n${i}r$$" type veth peer name "itk8n${i}p$$" || fail "veth"
    ip link set "itk8n${i}p$$" netns "$n"
    ip addr add "10.23$((2 + i)).$S.1/24" dev "itk8n${i}r$$"
    ip link set "itk8n${i}r$$" up
    ip -n "$n" addr add "10.23$((2 + i)).$S.2/24" dev "itk8n${i}p$$"
    ip -n "$n" link set "itk8n${i}p$$" up
    ip -n "$n" link set lo up
    ip -n "$n" route add default via "10.23$((2 + i)).$S.1"
  done
  N1=${EXTRA_NS[0]}
  N2=${EXTRA_NS[1]}
  NODE1_IP=10.233.$S.2
  NODE2_IP=10.234.$S.2
  P1_IP=10.233.$S.10
  P2_IP=10.234.$S.10
  P3_IP=10.234.$S.11
  ip -n "$N1" addr add "$P1_IP/24" dev "itk8n1p$$"
  ip -n "$N2" addr add "$P2_IP/24" dev "itk8n2p$$"
  ip -n "$N2" addr add "$P3_IP/24" dev "itk8n2p$$"
  BIND=10.233.$S.1
fi
python3 "$FAKE" --dir "$W/api" --bind "$BIND" --bookmark-interval 1 2>"$W/fake.log" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$W/api/ready" ] && break; sleep 0.05; done
[ -s "$W/api/ready" ] || fail "fake API server not ready: $(cat "$W/fake.log")"
API=$(cat "$W/api/ready")
CTL=$(cat "$W/api/control")
ADMIN=$(cat "$W/api/admin.token")
export KUBECONFIG=$W/api/kubeconfig
ok "fake API server at $API (bind $BIND)"

api() {  # METHOD PATH [BODY [CONTENT-TYPE]] → prints HTTP status
  curl -sS -o "$W/api.out" -w '%{http_code}' --cacert "$W/api/ca.crt" -H "Authorization: Bearer $ADMIN" \
    -X "$1" ${3:+-H "Content-Type: ${4:-application/json}" --data-binary "$3"} "$API$2"
}
# Marks a pod Running and Ready with PODIP through the status subresource, as the kubelet would.
pod_ready() {  # NAMESPACE NAME PODIP
  local c
  c=$(api PATCH "/api/v1/namespaces/$1/pods/$2/status" \
    "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$3\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" \
    application/merge-patch+json)
  [ "$c" = 200 ] || fail "status patch $1/$2: $c $(cat "$W/api.out")"
}
# The pool `ml/llama` (v1, app=vllm, port 8000) and the InferenceModel `chat` → llama-3-8b.
pool_and_model_yaml() {
  cat <<'YAML'
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: llama
  namespace: ml
spec:
  selector:
    matchLabels:
      app: vllm
  targetPorts:
  - number: 8000
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata:
  name: chat
  namespace: ml
spec:
  modelName: chat
  poolRef:
    name: llama
  targetModels:
  - name: llama-3-8b
YAML
}
control() { curl -sS -o /dev/null -w '%{http_code}' --cacert "$W/api/ca.crt" -H "Authorization: Bearer $ADMIN" -X POST "$CTL$1"; }

MPORT=$(free_port)
IPORT=$(free_port)
AGENT_LOG=$W/agent.log
start_agent() {  # extra flags...
  NODE_NAME= "$INFERTAP" run --kubeconfig "$KUBECONFIG" --node n1 \
    --metrics-addr "127.0.0.1:$MPORT" --inspect-addr "127.0.0.1:$IPORT" --poll-interval 0.2 "$@" \
    >"$AGENT_LOG" 2>&1 &
  AGENT=$!
  PIDS+=($AGENT)
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/readyz")" = 200 ] && return 0
    kill -0 $AGENT 2>/dev/null || fail "agent exited"
    sleep 0.05
  done
  fail "agent not ready in 15 s"
}

# The upstream scrape setup, verbatim in shape (gateway-api-inference-extension metrics guide),
# plus a service account without the role and one whose token is reviewed only later.
apply_scrape_rbac() {
  kubectl apply -f - >"$W/kubectl.out" 2>&1 <<'EOF' || fail "kubectl apply: $(cat "$W/kubectl.out")"
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
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: no-role
  namespace: default
---
apiVersion: v1
kind: Secret
metadata:
  name: no-role-token
  namespace: default
  annotations:
    kubernetes.io/service-account.name: no-role
type: kubernetes.io/service-account-token
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: late-reader
  namespace: default
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: late-reader-binding
subjects:
- kind: ServiceAccount
  name: late-reader
  namespace: default
roleRef:
  kind: ClusterRole
  name: inference-gateway-metrics-reader
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: v1
kind: Secret
metadata:
  name: late-reader-token
  namespace: default
  annotations:
    kubernetes.io/service-account.name: late-reader
type: kubernetes.io/service-account-token
EOF
}

# ============================================================================================
if [ "$PHASE" = auth ]; then
  start_agent --metrics-auth kubernetes
  grep -q "mode: kubernetes (--kubeconfig $KUBECONFIG): node n1, all namespaces" "$AGENT_LOG" \
    || fail "no mode line in the log"
  grep -q "metrics auth: kubernetes" "$AGENT_LOG" || fail "no auth line in the log"
  ok "agent ready in Kubernetes mode with --metrics-auth kubernetes"

  apply_scrape_rbac
  TOKEN=$(kubectl -n default get secret inference-gateway-sa-metrics-reader-secret -o jsonpath='{.data.token}' | base64 --decode)
  NOROLE=$(kubectl -n default get secret no-role-token -o jsonpath='{.data.token}' | base64 --decode)
  LATE=$(kubectl -n default get secret late-reader-token -o jsonpath='{.data.token}' | base64 --decode)
  [ -n "$TOKEN" ] && [ -n "$NOROLE" ] && [ -n "$LATE" ] || fail "service-account tokens not filled"

  code() { curl -s -o "$W/body" -w '%{http_code}' "$@"; }
  M=localhost:$MPORT/metrics
  c=$(code "$M"); [ "$c" = 401 ] || fail "no token: $c (want 401)"; ok "no token → 401"
  c=$(code -H "Authorization: Bearer not-a-valid-token" "$M"); [ "$c" = 401 ] || fail "bad token: $c"
  ok "bad token → 401"
  c=$(code -H "Authorization: Bearer $NOROLE" "$M"); [ "$c" = 403 ] || fail "token without the role: $c"
  ok "token without the ClusterRole → 403"
  # The upstream guide's command.
  curl -H "Authorization: Bearer $TOKEN" localhost:$MPORT/metrics >"$W/metrics" 2>/dev/null \
    || fail "curl with the reader token failed"
  c=$(code -H "Authorization: Bearer $TOKEN" "$M"); [ "$c" = 200 ] || fail "reader token: $c"
  grep -q '^# TYPE ' "$W/metrics" || fail "200 without an exposition"
  ok "curl -H \"Authorization: Bearer \$TOKEN\" localhost:$MPORT/metrics → 200 ($(wc -l <"$W/metrics") lines)"
  # Each decision came from a TokenReview + SubjectAccessReview on the API server.
  n=$(curl -sS --cacert "$W/api/ca.crt" -H "Authorization: Bearer $ADMIN" "$CTL/fake/requests?path=subjectaccessreviews" | jq '.requests | length')
  [ "$n" -ge 2 ] || fail "expected SubjectAccessReviews on the API server, saw $n"
  ok "$n SubjectAccessReviews seen by the API server"

  # The API goes away: a token not reviewed yet cannot be decided → 500 (never 200).
  [ "$(control '/fake/stop?mode=refuse')" = 200 ] || fail "stop the fake"
  c=$(code -H "Authorization: Bearer $LATE" "$M"); [ "$c" = 500 ] || fail "API down: $c (want 500)"
  ok "API stopped → 500 for an unreviewed token"
  c=$(code "localhost:$MPORT/healthz"); [ "$c" = 200 ] || fail "/healthz while API down: $c"
  c=$(code "localhost:$MPORT/readyz"); [ "$c" = 200 ] || fail "/readyz while API down: $c"
  ok "/healthz and /readyz open and ready while the API is down"
  [ "$(control '/fake/start')" = 200 ] || fail "start the fake"
  c=$(code -H "Authorization: Bearer $LATE" "$M"); [ "$c" = 200 ] || fail "API back: $c (want 200)"
  ok "API back → 200 (failures are not cached)"
  kill -TERM $AGENT; wait $AGENT; rc=$?
  [ $rc = 0 ] || fail "agent exit $rc after SIGTERM"
  echo PASS
  exit 0
fi

# ============================================================================================
if [ "$PHASE" = incluster ]; then
  command -v unshare >/dev/null || fail "missing tool unshare"
  apply_scrape_rbac
  # The agent's own service account with the permissions docs/kubernetes.md lists: list/watch of
  # pods and the inference resources, and system:auth-delegator for the reviews.
  kubectl apply -f - >"$W/kubectl.out" 2>&1 <<'YAML' || fail "kubectl apply: $(cat "$W/kubectl.out")"
apiVersion: v1
kind: ServiceAccount
metadata:
  name: infertap
  namespace: infertap-system
---
apiVersion: v1
kind: Secret
metadata:
  name: infertap-token
  namespace: infertap-system
  annotations:
    kubernetes.io/service-account.name: infertap
type: kubernetes.io/service-account-token
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: infertap
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: ["inference.networking.k8s.io", "inference.networking.x-k8s.io"]
  resources: ["inferencepools", "inferencemodels", "inferencemodelrewrites"]
  verbs: ["list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: infertap
subjects:
- kind: ServiceAccount
  name: infertap
  namespace: infertap-system
roleRef:
  kind: ClusterRole
  name: infertap
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: infertap-auth-delegator
subjects:
- kind: ServiceAccount
  name: infertap
  namespace: infertap-system
roleRef:
  kind: ClusterRole
  name: system:auth-delegator
  apiGroup: rbac.authorization.k8s.io
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: llama
  namespace: ml
spec:
  selector:
    matchLabels:
      app: vllm
  targetPorts:
  - number: 8000
---
apiVersion: v1
kind: Pod
metadata:
  name: vllm-0
  namespace: ml
  labels:
    app: vllm
spec:
  nodeName: n1
  containers:
  - name: vllm
    image: vllm/vllm-openai
YAML
  pod_ready ml vllm-0 10.99.0.5
  SA=$W/sa
  mkdir -p "$SA"
  kubectl -n infertap-system get secret infertap-token -o jsonpath='{.data.token}' | base64 --decode >"$SA/token"
  [ -s "$SA/token" ] || fail "no agent token"
  cp "$W/api/ca.crt" "$SA/ca.crt"
  printf infertap-system >"$SA/namespace"
  TOKEN=$(kubectl -n default get secret inference-gateway-sa-metrics-reader-secret -o jsonpath='{.data.token}' | base64 --decode)
  APORT=${API##*:}
  # "In a pod": the service-account files at their real path, in a private mount namespace (a
  # tmpfs over /run hides nothing from anyone else), the service env, the downward-API NODE_NAME,
  # and no mode or auth flags at all.
  unshare -m --propagation private sh -c '
    set -e
    mount -t tmpfs tmpfs /run
    mkdir -p /run/secrets/kubernetes.io/serviceaccount
    cp "$0"/token "$0"/ca.crt "$0"/namespace /run/secrets/kubernetes.io/serviceaccount/
    exec env KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$1" NODE_NAME=n1 \
      "$2" run --metrics-addr "127.0.0.1:$3" --inspect-addr "127.0.0.1:$4"' \
    "$SA" "$APORT" "$INFERTAP" "$MPORT" "$IPORT" >"$AGENT_LOG" 2>&1 &
  AGENT=$!
  PIDS+=($AGENT)
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/readyz")" = 200 ] && break
    kill -0 $AGENT 2>/dev/null || fail "agent exited"
    sleep 0.05
  done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$MPORT/readyz")" = 200 ] || fail "agent not ready"
  grep -q "kubernetes API https://127.0.0.1:$APORT (in-cluster)" "$AGENT_LOG" || fail "no in-cluster config line"
  grep -q "mode: kubernetes (running in a pod" "$AGENT_LOG" || fail "no in-pod mode line"
  grep -q "metrics auth: kubernetes (--metrics-auth=auto, in a pod)" "$AGENT_LOG" || fail "auto did not pick kubernetes"
  ok "in a pod with no flags: Kubernetes mode and --metrics-auth auto → kubernetes (logged)"
  state=$(curl -s "http://127.0.0.1:$IPORT/v1/state")
  echo "$state" | jq -e '.endpoints == ["10.99.0.5:8000"] and .topology.source == "kubernetes"' >/dev/null \
    || fail "in-cluster topology: $(echo "$state" | jq -c '{endpoints, topology}')"
  ok "the service account (list/watch + auth-delegator) sees the pool: endpoint 10.99.0.5:8000"
  c=$(curl -s -o /dev/null -w '%{http_code}' "localhost:$MPORT/metrics"); [ "$c" = 401 ] || fail "no token: $c"
  c=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "localhost:$MPORT/metrics")
  [ "$c" = 200 ] || fail "reader token: $c"
  ok "reviews made with the agent's own token: no token 401, reader 200"
  users=$(curl -sS --cacert "$W/api/ca.crt" -H "Authorization: Bearer $ADMIN" "$CTL/fake/requests?path=/api/v1/pods|tokenreviews|subjectaccessreviews" |
    jq -r '[.requests[] | select(.path | startswith("/fake/") | not) | .user] | unique | join(",")')
  [ "$users" = "system:serviceaccount:infertap-system:infertap" ] || fail "API callers: $users"
  ok "every watch and review came from system:serviceaccount:infertap-system:infertap"
  kill -TERM $AGENT; wait $AGENT || fail "agent exit after SIGTERM"
  echo PASS
  exit 0
fi

if [ "$PHASE" = twonode ]; then
  [ -x "$SIM" ] || fail "no $SIM"
  command -v prometheus >/dev/null || fail "missing tool prometheus (scripts/install-deps.sh)"
  ip netns exec "$N1" "$SIM" --listen "$P1_IP:8000" --model llama-3-8b --tokens 4 >"$W/sim1.log" 2>&1 &
  PIDS+=($!)
  ip netns exec "$N2" "$SIM" --listen "$P2_IP:8000" --listen "$P3_IP:8000" --model llama-3-8b \
    --tokens 4 >"$W/sim2.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q listening "$W/sim1.log" && grep -q listening "$W/sim2.log" && break; sleep 0.05; done
  grep -q listening "$W/sim2.log" || fail "sims did not start"
  apply_scrape_rbac
  TOKEN=$(kubectl -n default get secret inference-gateway-sa-metrics-reader-secret -o jsonpath='{.data.token}' | base64 --decode)
  [ -n "$TOKEN" ] || fail "no reader token"
  printf '%s' "$TOKEN" >"$W/reader.token"
  pod_yaml() {  # NAME NODE
    printf -- '---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: ml\n  labels:\n    app: vllm\nspec:\n  nodeName: %s\n  containers:\n  - name: vllm\n    image: vllm/vllm-openai\n' "$1" "$2"
  }
  { pool_and_model_yaml; pod_yaml p1 n1; pod_yaml p2 n2; } | kubectl apply -f - >"$W/kubectl.out" 2>&1 || fail "kubectl apply: $(cat "$W/kubectl.out")"
  pod_ready ml p1 "$P1_IP"
  pod_ready ml p2 "$P2_IP"
  for i in 1 2; do
    n=${EXTRA_NS[$((i - 1))]}
    nip=$([ $i = 1 ] && echo "$NODE1_IP" || echo "$NODE2_IP")
    ip netns exec "$n" env NODE_NAME=n$i "$INFERTAP" run --kubeconfig "$KUBECONFIG" \
      --metrics-addr "$nip:9090" --inspect-addr 127.0.0.1:9091 --metrics-auth kubernetes \
      --poll-interval 0.2 >"$W/agent$i.log" 2>&1 &
    PIDS+=($!)
    eval "AGENT$i=$!"
  done
  AGENT_LOG=$W/agent1.log
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$NODE1_IP:9090/readyz")" = 200 ] &&
      [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$NODE2_IP:9090/readyz")" = 200 ] && break
    sleep 0.05
  done
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$NODE2_IP:9090/readyz")" = 200 ] || fail "agents not ready: $(tail -5 "$W/agent2.log")"
  grep -q "mode: kubernetes" "$W/agent2.log" && grep -q "node n2" "$W/agent2.log" || fail "agent 2 mode line"
  endpoints_of() { ip netns exec "${EXTRA_NS[$(($1 - 1))]}" curl -s http://127.0.0.1:9091/v1/state | jq -c '.endpoints'; }
  for _ in $(seq 100); do
    [ "$(endpoints_of 1)" = "[\"$P1_IP:8000\"]" ] && [ "$(endpoints_of 2)" = "[\"$P2_IP:8000\"]" ] && break
    sleep 0.05
  done
  [ "$(endpoints_of 1)" = "[\"$P1_IP:8000\"]" ] || fail "agent 1 endpoints: $(endpoints_of 1)"
  [ "$(endpoints_of 2)" = "[\"$P2_IP:8000\"]" ] || fail "agent 2 endpoints: $(endpoints_of 2)"
  ok "two agents ready: n1 traces $P1_IP:8000 only, n2 traces $P2_IP:8000 only"
  for i in 1 2; do
    ip netns exec "${EXTRA_NS[$((i - 1))]}" curl -sN http://127.0.0.1:9091/v1/records >"$W/records$i.jsonl" 2>/dev/null &
    PIDS+=($!)
  done
  sleep 0.3

  # A real Prometheus scraping both agents with the reader's token.
  PPORT=$(free_port)
  cat >"$W/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
- job_name: infertap
  authorization:
    credentials_file: $W/reader.token
  static_configs:
  - targets: ['$NODE1_IP:9090', '$NODE2_IP:9090']
YAML
  prometheus --config.file="$W/prometheus.yml" --storage.tsdb.path="$W/tsdb" \
    --web.listen-address="127.0.0.1:$PPORT" >"$W/prometheus.log" 2>&1 &
  PIDS+=($!)

  # Both nodes' pods at once, from the root namespace (the "gateway").
  send_to "$P1_IP" 7 >"$W/sent1" &
  s1=$!
  send_to "$P2_IP" 11 >"$W/sent2" &
  s2=$!
  wait $s1 $s2
  [ "$(cat "$W/sent1")" = 7 ] && [ "$(cat "$W/sent2")" = 11 ] || fail "requests failed"
  count() { grep -c . "$W/records$1.jsonl" 2>/dev/null; }
  for _ in $(seq 50); do [ "$(count 1)" -ge 7 ] && [ "$(count 2)" -ge 11 ] && break; sleep 0.1; done
  [ "$(count 1)" = 7 ] || fail "node 1 records: $(count 1) (want 7)"
  [ "$(count 2)" = 11 ] || fail "node 2 records: $(count 2) (want 11)"
  jq -e -s 'all(.pod == "p1" and .node == "n1" and .pool == "llama" and .model_name == "chat")' "$W/records1.jsonl" >/dev/null || fail "node 1 attribution"
  jq -e -s 'all(.pod == "p2" and .node == "n2" and .pool == "llama" and .model_name == "chat")' "$W/records2.jsonl" >/dev/null || fail "node 2 attribution"
  ok "7 requests to p1 counted on n1 only, 11 to p2 on n2 only (pool llama, model chat)"

  # A pod created later on n2 (made Ready): n2's agent adds it within 1 s, n1's never does.
  pod_yaml p3 n2 | kubectl apply -f - >/dev/null || fail "kubectl apply p3"
  t0=$(now_ms)
  pod_ready ml p3 "$P3_IP"
  want="[\"$P2_IP:8000\",\"$P3_IP:8000\"]"
  for _ in $(seq 100); do [ "$(endpoints_of 2)" = "$want" ] && break; sleep 0.02; done
  dt=$(( $(now_ms) - t0 ))
  [ "$(endpoints_of 2)" = "$want" ] || fail "agent 2 endpoints: $(endpoints_of 2)"
  [ "$dt" -le 1000 ] || fail "p3 added after $dt ms"
  [ "$(endpoints_of 1)" = "[\"$P1_IP:8000\"]" ] || fail "agent 1 endpoints changed: $(endpoints_of 1)"
  ok "p3 on n2 Ready → n2 traces it after $dt ms; n1 unchanged"
  [ "$(send_to "$P3_IP" 5)" = 5 ] || fail "requests to p3"
  for _ in $(seq 50); do [ "$(count 2)" -ge 16 ] && break; sleep 0.1; done
  [ "$(count 1)" = 7 ] && [ "$(count 2)" = 16 ] || fail "after p3: n1 $(count 1) (want 7), n2 $(count 2) (want 16)"
  [ "$(jq -c 'select(.pod == "p3")' "$W/records2.jsonl" | wc -l)" = 5 ] || fail "p3 records"
  ok "5 requests to p3 counted on n2 only"

  # Each agent's /metrics (with the token) and Prometheus' sum over both = what was sent (23).
  total() {  # NODE_IP → the agent's request_total for model chat
    curl -s -H "Authorization: Bearer $TOKEN" "http://$1:9090/metrics" |
      awk '/^inference_model_request_total\{.*model_name="chat"/ {s += $NF} END {print s + 0}'
  }
  [ "$(total "$NODE1_IP")" = 7 ] || fail "n1 request_total $(total "$NODE1_IP")"
  [ "$(total "$NODE2_IP")" = 16 ] || fail "n2 request_total $(total "$NODE2_IP")"
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$NODE1_IP:9090/metrics")" = 401 ] || fail "n1 /metrics without a token"
  ok "request_total: n1 7, n2 16 (with the token; 401 without)"
  q='sum(inference_model_request_total{model_name="chat"})'
  got=""
  for _ in $(seq 150); do
    got=$(curl -s "http://127.0.0.1:$PPORT/api/v1/query" --data-urlencode "query=$q" | jq -r '.data.result[0].value[1] // empty' 2>/dev/null)
    [ "$got" = 23 ] && break
    sleep 0.2
  done
  [ "$got" = 23 ] || fail "Prometheus sum: '$got' (want 23); targets: $(curl -s "http://127.0.0.1:$PPORT/api/v1/targets" | jq -c '[.data.activeTargets[] | {scrapeUrl, health, lastError}]')"
  up=$(curl -s "http://127.0.0.1:$PPORT/api/v1/query" --data-urlencode 'query=sum(up{job="infertap"})' | jq -r '.data.result[0].value[1]')
  [ "$up" = 2 ] || fail "Prometheus up: $up"
  ok "Prometheus (credentials_file) scrapes both agents: up 2, sum(request_total) = 23 = requests sent"
  for a in $AGENT1 $AGENT2; do kill -TERM "$a"; wait "$a" || fail "agent exit after SIGTERM"; done
  echo PASS
  exit 0
fi

if [ "$PHASE" = cgroup ]; then
  [ -x "$SIM" ] || fail "no $SIM"
  # Makes each missing directory of a cgroup path (relative to $CGROOT), remembering the ones it
  # made for the cleanup.
  make_cgroup() {
    local rel=$1 p=$CGROOT part
    IFS=/ read -ra parts <<<"$rel"
    for part in "${parts[@]}"; do
      p=$p/$part
      [ -d "$p" ] && continue
      mkdir "$p" || fail "mkdir $p"
      CGROUPS_MADE+=("$p")
    done
  }
  # infertap-sim inside cgroup $1 (the shell joins it, then execs `ip netns exec`, which execs
  # the simulator: one process, its sockets created in the cgroup) listening on $2; pid in SIMPID.
  sim_in() {
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$1" ip netns exec "$NS" "$SIM" \
      --listen "$2:8000" --model llama-3-8b --tokens 4 >"$W/sim-$2.log" 2>&1 &
    SIMPID=$!
    PIDS+=($SIMPID)
    for _ in $(seq 100); do grep -q listening "$W/sim-$2.log" && return 0; sleep 0.05; done
    fail "sim on $2 did not start: $(cat "$W/sim-$2.log")"
  }
  pod_yaml() {  # NAME
    printf -- '---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  namespace: ml\n  labels:\n    app: vllm\nspec:\n  nodeName: n1\n  containers:\n  - name: vllm\n    image: vllm/vllm-openai\n' "$1"
  }
  uid_of() { kubectl -n ml get pod "$1" -o jsonpath='{.metadata.uid}'; }
  state() { curl -s "http://127.0.0.1:$IPORT/v1/state"; }
  pod_state() { state | jq -c --arg p "$1" '.capture.pods[] | select(.pod == $p)'; }
  attached_to() { bpftool cgroup show "$1" 2>/dev/null | grep -oE 'skb_(ingress|egress)' | sort | tr '\n' ' '; }
  records_for() { jq -c --arg p "$1" 'select(.pod == $p and .output_tokens == 4)' "$W/records.jsonl" 2>/dev/null | wc -l; }
  request_total() {
    curl -s "http://127.0.0.1:$MPORT/metrics" |
      awk '/^inference_model_request_total\{.*model_name="chat"/ {s += $NF} END {print s + 0}'
  }

  # Flag mistakes: one line, exit 2, before anything starts.
  usage() {  # WANT_SUBSTRING ARGS...
    local want=$1
    shift
    NODE_NAME= "$INFERTAP" run --metrics-auth none "$@" >"$W/usage.out" 2>&1
    local rc=$?
    [ $rc = 2 ] || fail "infertap run $*: exit $rc (want 2): $(cat "$W/usage.out")"
    [ "$(wc -l <"$W/usage.out")" = 1 ] && grep -qF -- "$want" "$W/usage.out" ||
      fail "infertap run $*: $(cat "$W/usage.out") (want one line with '$want')"
  }
  usage "--cgroup-root is for Kubernetes mode" --target 127.0.0.1:1 --cgroup-root "$CGROOT"
  usage "--capture-cgroup is for standalone mode" --kubeconfig "$KUBECONFIG" --node n1 --capture-cgroup "$CGROOT"
  usage "--cgroup-root is for --capture-backend cgroup" --kubeconfig "$KUBECONFIG" --node n1 --cgroup-root "$CGROOT"
  usage "--cgroup-root: /proc is not on a cgroup v2" --kubeconfig "$KUBECONFIG" --node n1 --capture-backend cgroup --cgroup-root /proc
  ok "flag errors: --cgroup-root standalone or with the syscall backend, --capture-cgroup in Kubernetes mode, a --cgroup-root not on cgroup v2"

  { pool_and_model_yaml; pod_yaml vllm-0; pod_yaml vllm-1; } | kubectl apply -f - >"$W/kubectl.out" 2>&1 ||
    fail "kubectl apply: $(cat "$W/kubectl.out")"
  UID0=$(uid_of vllm-0)
  UID1=$(uid_of vllm-1)
  [ -n "$UID0" ] && [ -n "$UID1" ] || fail "pods without metadata.uid"
  # vllm-0: a Burstable pod of a systemd-driver kubelet.
  CG0_REL=kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UID0//-/_}.slice
  CG0=$CGROOT/$CG0_REL
  make_cgroup "$CG0_REL"
  sim_in "$CG0" "$POD_IP"
  SIM0=$SIMPID
  pod_ready ml vllm-0 "$POD_IP"
  pod_ready ml vllm-1 "$POD_IP2"
  ok "pods vllm-0 (uid $UID0, cgroup $CG0_REL, infertap-sim inside) and vllm-1 (uid $UID1, no cgroup yet) Ready"

  start_agent --metrics-auth none --capture-backend cgroup --cgroup-root "$CGROOT"
  grep -q "cgroup backend on this node's model-server pods, their cgroups found from their UIDs under $CGROOT" "$AGENT_LOG" ||
    fail "no cgroup-root line in the log"
  curl -sN "http://127.0.0.1:$IPORT/v1/records" >"$W/records.jsonl" 2>/dev/null &
  PIDS+=($!)
  for _ in $(seq 100); do [ "$(pod_state vllm-0 | jq -r .status)" = attached ] && break; sleep 0.05; done
  s0=$(pod_state vllm-0)
  echo "$s0" | jq -e --arg c "$CG0" --arg u "$UID0" '.attached and .cgroup == $c and .uid == $u and .namespace == "ml"' >/dev/null ||
    fail "vllm-0 in /v1/state: $s0"
  [ "$(attached_to "$CG0")" = "skb_egress skb_ingress " ] || fail "bpftool cgroup show $CG0: $(bpftool cgroup show "$CG0")"
  s1=$(pod_state vllm-1)
  echo "$s1" | jq -e --arg r "$CGROOT" '(.attached | not) and .cgroup == null and (.status | startswith("cgroup not found under " + $r))' >/dev/null ||
    fail "vllm-1 in /v1/state: $s1"
  state | jq -e --arg c "$CG0" --arg r "$CGROOT" '.capture.backend == "cgroup" and .capture.cgroup_root == $r and .capture.cgroups == [$c]' >/dev/null ||
    fail "/v1/state capture: $(state | jq -c .capture)"
  ok "vllm-0's cgroup attached (/v1/state, bpftool: skb_ingress + skb_egress); vllm-1: $(echo "$s1" | jq -r .status)"

  sleep 0.3
  [ "$(send_to "$POD_IP" 5)" = 5 ] || fail "requests to vllm-0"
  for _ in $(seq 50); do [ "$(records_for vllm-0)" -ge 5 ] && break; sleep 0.1; done
  [ "$(records_for vllm-0)" = 5 ] || fail "records for vllm-0: $(records_for vllm-0) (want 5)"
  bad=$(jq -c 'select(.pool != "llama" or .namespace != "ml" or .pod != "vllm-0" or .model_name != "chat" or .target_model_name != "llama-3-8b" or .node != "n1" or .status != 200 or .stream or .output_tokens != 4)' "$W/records.jsonl")
  [ -z "$bad" ] || fail "records: $bad"
  for _ in $(seq 30); do [ "$(request_total)" = 5 ] && break; sleep 0.1; done
  [ "$(request_total)" = 5 ] || fail "request_total $(request_total) (want 5)"
  ok "5 requests to vllm-0: 5 records (pool llama, ns ml, pod vllm-0, model chat, status 200, 4 tokens), request_total 5"

  # vllm-1's IP served by a process in no pod cgroup: in the endpoint filter, never captured.
  sim_in "$CGROOT" "$POD_IP2"
  [ "$(send_to "$POD_IP2" 3)" = 3 ] || fail "requests to the outside server"
  sleep 0.5
  [ "$(records_for vllm-1)" = 0 ] || fail "a server outside the pod cgroups was captured"
  kill "$SIMPID"; wait "$SIMPID" 2>/dev/null
  ok "a server on vllm-1's IP outside any pod cgroup: 3 requests, 0 records"

  # The kubelet creates vllm-1's cgroup after the pod object (cgroupfs spelling, kubepods moved
  # one level down by the kubelet's --cgroup-root): the periodic retry attaches it.
  CG1_REL=infertap-e2e-$$/kubepods/besteffort/pod$UID1
  CG1=$CGROOT/$CG1_REL
  t0=$(now_ms)
  make_cgroup "$CG1_REL"
  sim_in "$CG1" "$POD_IP2"
  SIM1=$SIMPID
  for _ in $(seq 150); do [ "$(pod_state vllm-1 | jq -r .status)" = attached ] && break; sleep 0.02; done
  dt=$(( $(now_ms) - t0 ))
  pod_state vllm-1 | jq -e --arg c "$CG1" '.attached and .cgroup == $c' >/dev/null || fail "vllm-1 not attached: $(pod_state vllm-1)"
  [ "$dt" -le 2500 ] || fail "vllm-1's cgroup attached after $dt ms (retry every second)"
  [ "$(attached_to "$CG1")" = "skb_egress skb_ingress " ] || fail "bpftool cgroup show $CG1: $(bpftool cgroup show "$CG1")"
  grep -q "pod ml/vllm-1 (uid $UID1): capturing cgroup $CG1" "$AGENT_LOG" || fail "no attach line for vllm-1"
  ok "vllm-1's cgroup created later ($CG1_REL) → attached on retry after $dt ms"
  [ "$(send_to "$POD_IP2" 4)" = 4 ] || fail "requests to vllm-1"
  for _ in $(seq 50); do [ "$(records_for vllm-1)" -ge 4 ] && break; sleep 0.1; done
  [ "$(records_for vllm-1)" = 4 ] || fail "records for vllm-1: $(records_for vllm-1) (want 4)"
  for _ in $(seq 30); do [ "$(request_total)" = 9 ] && break; sleep 0.1; done
  [ "$(request_total)" = 9 ] || fail "request_total $(request_total) (want 9)"
  [ "$(records_for vllm-0)" = 5 ] || fail "vllm-0 records changed"
  ok "4 requests to vllm-1: 4 records, request_total 9"

  # A stream open on vllm-0 when it is deleted: its connection ends with the detach (not at the
  # 300 s idle timeout).
  curl -s -o /dev/null "http://$POD_IP:8000/v1/chat/completions" -H 'Content-Type: application/json' \
    -H 'x-sim-ttft-ms: 100' -H 'x-sim-itl-ms: 1500' \
    -d '{"model":"llama-3-8b","messages":[{"role":"user","content":"s"}],"max_tokens":3,"stream":true}' &
  SLOW=$!
  PIDS+=($SLOW)
  for _ in $(seq 50); do [ "$(state | jq .connections)" -ge 1 ] && break; sleep 0.05; done
  [ "$(state | jq .connections)" -ge 1 ] || fail "the open stream is not tracked"
  t0=$(now_ms)
  c=$(api DELETE /api/v1/namespaces/ml/pods/vllm-0)
  [ "$c" = 200 ] || fail "delete: $c"
  for _ in $(seq 100); do [ -z "$(pod_state vllm-0)" ] && [ -z "$(attached_to "$CG0")" ] && break; sleep 0.02; done
  dt=$(( $(now_ms) - t0 ))
  [ -z "$(pod_state vllm-0)" ] || fail "deleted pod still in /v1/state: $(pod_state vllm-0)"
  [ -z "$(attached_to "$CG0")" ] || fail "still attached to $CG0: $(bpftool cgroup show "$CG0")"
  state | jq -e --arg c "$CG1" '.capture.cgroups == [$c]' >/dev/null || fail "cgroups after delete: $(state | jq -c .capture.cgroups)"
  [ "$dt" -le 1500 ] || fail "vllm-0 detached after $dt ms"
  for _ in $(seq 40); do [ "$(state | jq .capture.counters.detach_closed)" -ge 1 ] && break; sleep 0.05; done
  [ "$(state | jq .capture.counters.detach_closed)" -ge 1 ] || fail "the open stream's connection did not end: $(state | jq -c '{connections, capture}')"
  grep -q "capture programs detached from $CG0" "$AGENT_LOG" || fail "no detach line"
  ok "vllm-0 deleted → detached in $dt ms (/v1/state, bpftool cgroup show empty), its open stream's connection ended ($(state | jq .capture.counters.detach_closed) by the detach)"
  wait $SLOW
  # The kubelet then removes the pod's cgroup.
  kill "$SIM0"; wait "$SIM0" 2>/dev/null
  rmdir "$CG0" || fail "rmdir $CG0"

  # vllm-1's containers and cgroup go first (the kubelet tearing the pod down) while the pod is
  # still in the topology: the vanished cgroup detaches cleanly, the pod reads "not found".
  kill "$SIM1"; wait "$SIM1" 2>/dev/null
  for _ in $(seq 50); do rmdir "$CG1" 2>/dev/null && break; sleep 0.05; done
  [ -d "$CG1" ] && fail "cannot remove $CG1"
  for _ in $(seq 150); do [ "$(state | jq -c .capture.cgroups)" = "[]" ] && break; sleep 0.02; done
  state | jq -e '.capture.cgroups == []' >/dev/null || fail "vanished cgroup still attached: $(state | jq -c .capture)"
  pod_state vllm-1 | jq -e '(.attached | not) and (.status | startswith("cgroup not found"))' >/dev/null ||
    fail "vllm-1 after its cgroup vanished: $(pod_state vllm-1)"
  kill -0 $AGENT 2>/dev/null || fail "agent exited"
  ok "vllm-1's cgroup removed under it → detached cleanly; $(pod_state vllm-1 | jq -r .status)"
  c=$(api DELETE /api/v1/namespaces/ml/pods/vllm-1)
  [ "$c" = 200 ] || fail "delete vllm-1: $c"
  for _ in $(seq 100); do [ "$(state | jq -c .capture.pods)" = "[]" ] && break; sleep 0.02; done
  state | jq -e '.capture.pods == [] and .capture.cgroups == [] and .endpoints == []' >/dev/null ||
    fail "after both pods: $(state | jq -c '{endpoints, capture}')"
  grep -q "cannot attach" "$AGENT_LOG" && fail "an attach failed: $(grep 'cannot attach' "$AGENT_LOG")"
  for c in "${CGROUPS_MADE[@]}"; do
    [ -d "$c" ] && [ -n "$(attached_to "$c")" ] && fail "still attached to $c: $(bpftool cgroup show "$c")"
  done
  ok "both pods gone: no pod, no cgroup attached, nothing in bpftool on the test's cgroups"
  kill -TERM $AGENT; wait $AGENT; rc=$?
  [ $rc = 0 ] || fail "agent exit $rc after SIGTERM"
  echo PASS
  exit 0
fi

[ "$PHASE" = topology ] || fail "unknown phase $PHASE"
[ -x "$SIM" ] || fail "no $SIM"
ip netns exec "$NS" "$SIM" --listen "$POD_IP:8000" --listen "$POD_IP2:8000" --model llama-3-8b --tokens 4 >"$W/sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$W/sim.log" && break; sleep 0.05; done
grep -q listening "$W/sim.log" || fail "sim did not start: $(cat "$W/sim.log")"

{ pool_and_model_yaml; cat <<EOF
---
apiVersion: v1
kind: Pod
metadata:
  name: vllm-0
  namespace: ml
  labels:
    app: vllm
    inference.networking.k8s.io/engine-type: vllm
spec:
  nodeName: n1
  containers:
  - name: vllm
    image: vllm/vllm-openai
EOF
} | kubectl apply -f - >"$W/kubectl.out" 2>&1 || fail "kubectl apply: $(cat "$W/kubectl.out")"
ok "pool, InferenceModel and a Pending pod applied with kubectl"

start_agent --metrics-auth none
grep -q "mode: kubernetes" "$AGENT_LOG" || fail "no mode line"
curl -sN "http://127.0.0.1:$IPORT/v1/records" >"$W/records.jsonl" 2>/dev/null &
PIDS+=($!)

state_has_endpoint() { curl -s "http://127.0.0.1:$IPORT/v1/state" | jq -e --arg e "$POD_IP:8000" '.endpoints | index($e) != null' >/dev/null; }
# Waits until the kernel endpoint set has (want=1) or lacks (want=0) the pod; prints ms since $1.
wait_endpoint() {
  local t0=$1 want=$2
  for _ in $(seq 100); do
    if state_has_endpoint; then [ "$want" = 1 ] && { echo $(( $(now_ms) - t0 )); return 0; }
    else [ "$want" = 0 ] && { echo $(( $(now_ms) - t0 )); return 0; }; fi
    sleep 0.02
  done
  echo timeout; return 1
}
send() {  # N requests to the pod from the root namespace
  for _ in $(seq "$1"); do
    curl -s -o /dev/null -w '%{http_code}\n' "http://$POD_IP:8000/v1/chat/completions" \
      -H 'Content-Type: application/json' \
      -d '{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
  done | sort | uniq -c | grep -q "$1 200" || fail "requests to the sim failed"
}
# Foreground requests ask for 4 tokens, the background load for 2; the slow stream is the only
# streaming request.
records_for() { jq -c --arg p "$1" 'select(.pod == $p and .output_tokens == 4)' "$W/records.jsonl" 2>/dev/null | wc -l; }
metric() { curl -s "http://127.0.0.1:$MPORT/metrics" | grep -E "^$1" ; }

state_has_endpoint && fail "a Pending pod is traced"
sleep 0.3
send 2
sleep 0.5
[ "$(records_for vllm-0)" = 0 ] || fail "records for a pod that is not Ready"
ok "Pending pod: not traced"

# Ready (status subresource): traced within 1 s.
t0=$(now_ms)
pod_ready ml vllm-0 "$POD_IP"
dt=$(wait_endpoint "$t0" 1) || fail "endpoint not added"
[ "$dt" -le 1000 ] || fail "endpoint added after $dt ms (> 1 s)"
ok "pod Ready → endpoint added in $dt ms"
send 5
for _ in $(seq 50); do [ "$(records_for vllm-0)" -ge 5 ] && break; sleep 0.1; done
n=$(records_for vllm-0)
[ "$n" = 5 ] || fail "want 5 records for vllm-0, got $n"
bad=$(jq -c 'select(.pod == "vllm-0") | select(.pool != "llama" or .namespace != "ml" or .model_name != "chat" or .target_model_name != "llama-3-8b" or .node != "n1" or .status != 200)' "$W/records.jsonl")
[ -z "$bad" ] || fail "records with wrong attribution: $bad"
ok "5 records: pool llama, namespace ml, pod vllm-0, model_name chat (InferenceModel), target llama-3-8b"
for _ in $(seq 50); do metric 'inference_pool_ready_pods\{name="llama"\} 1' >/dev/null && break; sleep 0.1; done
metric 'inference_pool_ready_pods\{name="llama"\} 1' >/dev/null || fail "pool gauge: $(metric inference_pool_ready_pods)"
metric 'inference_pool_per_pod_queue_size\{model_server_pod="vllm-0",name="llama"\}' >/dev/null \
  || fail "per-pod gauge for vllm-0: $(metric inference_pool_per_pod_queue_size)"
ok "pool gauges: inference_pool_ready_pods{name=\"llama\"} 1, per-pod series for vllm-0"

# From here on a background load runs (new connection per request, 2 tokens) while the pod is
# relabelled, relabelled back and deleted; and one slow stream (3 tokens, 1.5 s) is open across
# the relabel: it keeps its attribution until it ends.
( while [ ! -e "$W/stop-load" ]; do
    curl -s -o /dev/null -w '%{http_code}\n' "http://$POD_IP:8000/v1/chat/completions" \
      -H 'Content-Type: application/json' \
      -d '{"model":"llama-3-8b","messages":[{"role":"user","content":"x"}],"max_tokens":2}'
    sleep 0.02
  done >"$W/load.codes" ) &
LOAD=$!
PIDS+=($LOAD)
curl -s -o "$W/slow.out" "http://$POD_IP:8000/v1/chat/completions" -H 'Content-Type: application/json' \
  -H 'x-sim-ttft-ms: 100' -H 'x-sim-itl-ms: 700' \
  -d '{"model":"llama-3-8b","messages":[{"role":"user","content":"s"}],"max_tokens":3,"stream":true}' &
SLOW=$!
PIDS+=($SLOW)
sleep 0.4
curl -s "http://127.0.0.1:$MPORT/metrics" >"$W/metrics"
grep -q 'model_name="chat",target_model_name="llama-3-8b"' "$W/metrics" || fail "no chat series in /metrics"
ok "/metrics has model_name=\"chat\""

# Relabelled out of the pool: untraced within 1 s.
t0=$(now_ms)
c=$(api PATCH /api/v1/namespaces/ml/pods/vllm-0 '{"metadata":{"labels":{"app":"other"}}}' application/merge-patch+json)
[ "$c" = 200 ] || fail "relabel: $c"
dt=$(wait_endpoint "$t0" 0) || fail "endpoint not removed after relabel"
[ "$dt" -le 1000 ] || fail "endpoint removed after $dt ms (> 1 s)"
ok "pod relabelled out of the pool → endpoint removed in $dt ms"
wait $SLOW || fail "slow stream failed"
for _ in $(seq 30); do
  [ -n "$(jq -c 'select(.stream)' "$W/records.jsonl")" ] && break; sleep 0.1
done
slow=$(jq -c 'select(.stream)' "$W/records.jsonl")
[ "$(echo "$slow" | grep -c .)" = 1 ] || fail "want one record for the slow stream, got: $slow"
echo "$slow" | jq -e '.pool == "llama" and .pod == "vllm-0" and .model_name == "chat" and .stream' >/dev/null \
  || fail "slow stream attribution: $slow"
ok "a stream open across the relabel completed and kept pool llama / pod vllm-0"
send 3
sleep 0.5
n=$(records_for vllm-0)
[ "$n" = 5 ] || fail "records after relabel: $n (want still 5)"
ok "requests after the relabel are not traced"

# Back in, then deleted.
kubectl -n ml label pod vllm-0 app=vllm --overwrite >/dev/null || fail "kubectl label"
t0=$(now_ms)
dt=$(wait_endpoint "$t0" 1) || fail "endpoint not re-added"
send 2
for _ in $(seq 50); do [ "$(records_for vllm-0)" -ge 7 ] && break; sleep 0.1; done
[ "$(records_for vllm-0)" = 7 ] || fail "want 7 records after relabel back"
ok "relabelled back (kubectl label) → traced again"
t0=$(now_ms)
c=$(api DELETE /api/v1/namespaces/ml/pods/vllm-0)
[ "$c" = 200 ] || fail "delete: $c"
dt=$(wait_endpoint "$t0" 0) || fail "endpoint not removed after delete"
[ "$dt" -le 1000 ] || fail "endpoint removed after $dt ms after delete (> 1 s)"
ok "pod deleted → endpoint removed in $dt ms"
send 2
sleep 0.5
[ "$(records_for vllm-0)" = 7 ] || fail "records after delete"
touch "$W/stop-load"
wait $LOAD
sent=$(grep -c '^200$' "$W/load.codes")
[ "$(grep -vc '^200$' "$W/load.codes")" = 0 ] || fail "background requests failed"
bg=$(jq -c 'select(.output_tokens == 2)' "$W/records.jsonl" | wc -l)
[ "$bg" -ge 1 ] && [ "$bg" -lt "$sent" ] || fail "background: $bg records for $sent requests (want some, not all)"
ok "background load: $sent requests, $bg traced (only while the pod was in the pool)"
bad=$(jq -c 'select(.pool != "llama" or .namespace != "ml" or .pod != "vllm-0" or .model_name != "chat" or .node != "n1" or .status != 200)' "$W/records.jsonl")
[ -z "$bad" ] || fail "records with wrong attribution: $bad"
ok "all $(grep -c . "$W/records.jsonl") records attributed to llama / ml / vllm-0 / chat"
metric 'inference_pool_per_pod_queue_size\{model_server_pod="vllm-0"' >/dev/null && fail "per-pod gauge of a deleted pod"
ok "per-pod gauges of the deleted pod are gone"
curl -s "http://127.0.0.1:$IPORT/v1/state" >"$W/state.json"
jq -e '.topology.source == "kubernetes" and (.topology.pools[0].origin | startswith("kubernetes InferencePool ml/llama"))' "$W/state.json" >/dev/null \
  || fail "/v1/state topology: $(jq -c .topology "$W/state.json")"
ok "/v1/state: topology from kubernetes with origins"

# Two pools named "llama" in two namespaces, both with a pod on this node: each gets the label
# "namespace/name" (docs/kubernetes.md, "Two pools with one name"), records and gauges follow, and
# the exposition has no duplicate series. ml2 has no InferenceModel: model_name = the target.
before=$(grep -c . "$W/records.jsonl")
kubectl apply -f - >"$W/kubectl.out" 2>&1 <<YAML || fail "kubectl apply: $(cat "$W/kubectl.out")"
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: llama
  namespace: ml2
spec:
  selector:
    matchLabels:
      app: vllm2
  targetPorts:
  - number: 8000
---
apiVersion: v1
kind: Pod
metadata:
  name: vllm-b
  namespace: ml2
  labels:
    app: vllm2
spec:
  nodeName: n1
  containers:
  - name: vllm
    image: vllm/vllm-openai
---
apiVersion: v1
kind: Pod
metadata:
  name: vllm-0
  namespace: ml
  labels:
    app: vllm
spec:
  nodeName: n1
  containers:
  - name: vllm
    image: vllm/vllm-openai
YAML
pod_ready ml vllm-0 "$POD_IP"
pod_ready ml2 vllm-b "$POD_IP2"
for _ in $(seq 100); do
  [ "$(curl -s "http://127.0.0.1:$IPORT/v1/state" | jq -c '.endpoints | sort')" = "[\"$POD_IP:8000\",\"$POD_IP2:8000\"]" ] && break
  sleep 0.02
done
[ "$(curl -s "http://127.0.0.1:$IPORT/v1/state" | jq -c '.endpoints | sort')" = "[\"$POD_IP:8000\",\"$POD_IP2:8000\"]" ] \
  || fail "two pools' endpoints: $(curl -s "http://127.0.0.1:$IPORT/v1/state" | jq -c .endpoints)"
send 2
for _ in $(seq 2); do
  curl -s -o /dev/null "http://$POD_IP2:8000/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
done
for _ in $(seq 50); do [ "$(grep -c . "$W/records.jsonl")" -ge $((before + 4)) ] && break; sleep 0.1; done
new=$(tail -n +$((before + 1)) "$W/records.jsonl")
[ "$(echo "$new" | jq -c 'select(.pool == "ml/llama" and .pod == "vllm-0" and .model_name == "chat")' | wc -l)" = 2 ] \
  || fail "records for ml/llama: $new"
[ "$(echo "$new" | jq -c 'select(.pool == "ml2/llama" and .namespace == "ml2" and .pod == "vllm-b" and .model_name == "llama-3-8b")' | wc -l)" = 2 ] \
  || fail "records for ml2/llama: $new"
ok "two pools named llama: records labelled ml/llama (model chat) and ml2/llama (model llama-3-8b)"
for _ in $(seq 50); do
  metric 'inference_pool_ready_pods\{name="ml2/llama"\} 1' >/dev/null && metric 'inference_pool_ready_pods\{name="ml/llama"\} 1' >/dev/null && break
  sleep 0.1
done
metric 'inference_pool_ready_pods\{name="ml/llama"\} 1' >/dev/null && metric 'inference_pool_ready_pods\{name="ml2/llama"\} 1' >/dev/null \
  || fail "pool gauges: $(metric inference_pool_ready_pods)"
metric 'inference_pool_ready_pods\{name="llama"\}' >/dev/null && fail "a plain llama pool series is left"
curl -s "http://127.0.0.1:$MPORT/metrics" | grep -v '^#' | sed 's/ [^ ]*$//' | sort | uniq -d >"$W/dups"
[ ! -s "$W/dups" ] || fail "duplicate series: $(head -3 "$W/dups")"
ok "pool gauges per namespace/name, no duplicate series in the exposition"
kill -TERM $AGENT; wait $AGENT; rc=$?
[ $rc = 0 ] || fail "agent exit $rc after SIGTERM"
echo PASS
