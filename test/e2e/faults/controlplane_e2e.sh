#!/usr/bin/env bash
# The faults tier's control-plane case (docs/faults.md#kubernetes-api-down-or-slow). Root + BPF.
#
#   controlplane_e2e.sh BUILD_DIR SOURCE_DIR
#
# `infertap run --kubeconfig` against the fake API server (test/fake_apiserver) bound to the root
# end of a veth, infertap-sim in a network namespace as the pod. The API server then misbehaves:
# 500s, garbage bodies, 5 s answers, refused connections (down), a watch cut inside an event.
# During each: /readyz stays 200, requests to the pod keep their attribution (the last known
# state), and — from the fake's request log — the agent's requests stay few (backoff, no tight
# loop). After each: a topology change (the pod relabelled out of the pool, then back) reaches
# the kernel endpoint set; the time it took is printed and bounded.
#
# Exit 0 pass, 1 fail, 77 skip (not root / no BPF).
set -u
BUILD=$1
SRC=$2
INFERTAP=$BUILD/infertap
SIM=$BUILD/infertap-sim
FAKE=$SRC/test/fake_apiserver/fake_apiserver.py
OUTAGE_S=${FAULTS_OUTAGE_S:-8}

fail() {
  echo "FAIL: $*" >&2
  [ -n "${AGENT_LOG:-}" ] && [ -f "$AGENT_LOG" ] && { echo "--- agent log (tail):" >&2; tail -30 "$AGENT_LOG" >&2; }
  exit 1
}
ok() { echo "ok: $*"; }
skip() {
  [ "${INFERTAP_REQUIRE_BPF:-}" = 1 ] && fail "INFERTAP_REQUIRE_BPF=1, but this test cannot run: $*"
  echo "SKIP: $*"
  exit 77
}
[ "$(id -u)" = 0 ] || skip "needs root"
[ -r /sys/kernel/btf/vmlinux ] || skip "no BTF (/sys/kernel/btf/vmlinux)"
for t in curl kubectl jq python3 ip openssl; do
  command -v $t >/dev/null || fail "missing tool $t (scripts/install-deps.sh)"
done
[ -x "$INFERTAP" ] || fail "no $INFERTAP"
[ -x "$SIM" ] || fail "no $SIM"

W=$(mktemp -d /tmp/infertap-faults-cp.XXXXXX)
PIDS=()
S=$(( ($$ % 200) + 20 ))
NS="itfcp-$$"
VETH="itfcr$$"
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  ip netns del "$NS" 2>/dev/null
  ip link del "$VETH" 2>/dev/null
  [ -n "${KEEP:-}" ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

# 10.232.S.0/24 (docs/testing.md): the fake API on the root end, the pod on the namespace end.
ip netns add "$NS" || fail "ip netns add"
ip link add "$VETH" type veth peer name "itfcp$$" || fail "veth"
ip link set "itfcp$$" netns "$NS"
ip addr add "10.232.$S.1/24" dev "$VETH"
ip link set "$VETH" up
ip -n "$NS" addr add "10.232.$S.2/24" dev "itfcp$$"
ip -n "$NS" link set "itfcp$$" up
ip -n "$NS" link set lo up
BIND=10.232.$S.1
POD_IP=10.232.$S.2

python3 "$FAKE" --dir "$W/api" --bind "$BIND" --bookmark-interval 1 2>"$W/fake.log" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$W/api/ready" ] && break; sleep 0.05; done
[ -s "$W/api/ready" ] || fail "fake API server not ready: $(cat "$W/fake.log")"
API=$(cat "$W/api/ready")
CTL=$(cat "$W/api/control")
ADMIN=$(cat "$W/api/admin.token")
export KUBECONFIG=$W/api/kubeconfig

api() {  # METHOD PATH [BODY [CONTENT-TYPE]] → prints HTTP status
  curl -sS -o "$W/api.out" -w '%{http_code}' --cacert "$W/api/ca.crt" -H "Authorization: Bearer $ADMIN" \
    -X "$1" ${3:+-H "Content-Type: ${4:-application/json}" --data-binary "$3"} "$API$2"
}
control() {  # METHOD PATH → prints HTTP status, body in $W/ctl.out
  curl -sS -o "$W/ctl.out" -w '%{http_code}' --cacert "$W/api/ca.crt" -H "Authorization: Bearer $ADMIN" \
    -X "$1" "$CTL$2"
}
relabel() {  # APP-LABEL
  local c
  c=$(api PATCH /api/v1/namespaces/ml/pods/vllm-0 "{\"metadata\":{\"labels\":{\"app\":\"$1\"}}}" \
    application/merge-patch+json)
  [ "$c" = 200 ] || fail "relabel: $c $(cat "$W/api.out")"
}

ip netns exec "$NS" "$SIM" --listen "$POD_IP:8000" --model llama-3-8b --tokens 4 >"$W/sim.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$W/sim.log" && break; sleep 0.05; done
grep -q listening "$W/sim.log" || fail "sim did not start: $(cat "$W/sim.log")"

kubectl apply -f - >"$W/kubectl.out" 2>&1 <<'YAML' || fail "kubectl apply: $(cat "$W/kubectl.out")"
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
c=$(api PATCH /api/v1/namespaces/ml/pods/vllm-0/status \
  "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$POD_IP\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}" \
  application/merge-patch+json)
[ "$c" = 200 ] || fail "status patch: $c"

MPORT=$(free_port)
IPORT=$(free_port)
AGENT_LOG=$W/agent.log
NODE_NAME= "$INFERTAP" run --kubeconfig "$KUBECONFIG" --node n1 --metrics-auth none \
  --metrics-addr "127.0.0.1:$MPORT" --inspect-addr "127.0.0.1:$IPORT" --poll-interval 0.5 \
  >"$AGENT_LOG" 2>&1 &
AGENT=$!
PIDS+=($AGENT)
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$MPORT/readyz")" = 200 ]; }
for _ in $(seq 300); do ready && break; kill -0 $AGENT 2>/dev/null || fail "agent exited"; sleep 0.05; done
ready || fail "agent not ready in 15 s"
curl -sN "http://127.0.0.1:$IPORT/v1/records" >"$W/records.jsonl" 2>/dev/null &
PIDS+=($!)

state_has_endpoint() { curl -s --max-time 2 "http://127.0.0.1:$IPORT/v1/state" | jq -e --arg e "$POD_IP:8000" '.endpoints | index($e) != null' >/dev/null; }
wait_endpoint() {  # T0_MS WANT(1|0) LIMIT_S → prints ms since T0
  local t0=$1 want=$2 limit=$3 end
  end=$(( $(now_ms) + limit * 1000 ))
  while [ "$(now_ms)" -lt "$end" ]; do
    if state_has_endpoint; then [ "$want" = 1 ] && { echo $(( $(now_ms) - t0 )); return 0; }
    else [ "$want" = 0 ] && { echo $(( $(now_ms) - t0 )); return 0; }; fi
    sleep 0.02
  done
  echo timeout; return 1
}
SENT=0
send() {  # one request to the pod, tagged by its max_tokens (4)
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$POD_IP:8000/v1/chat/completions" \
    -H 'Content-Type: application/json' \
    -d '{"model":"llama-3-8b","messages":[{"role":"user","content":"hi"}],"max_tokens":4}')
  [ "$code" = 200 ] || fail "request to the pod: $code"
  SENT=$((SENT + 1))
}
attributed() { jq -c 'select(.pod == "vllm-0" and .pool == "llama" and .namespace == "ml" and .model_name == "chat" and .output_tokens == 4)' "$W/records.jsonl" 2>/dev/null | wc -l; }
expect_records() {  # every request sent so far has an attributed record
  local n
  for _ in $(seq 50); do n=$(attributed); [ "$n" -ge "$SENT" ] && break; sleep 0.1; done
  [ "$n" = "$SENT" ] || fail "$1: $SENT requests, $n attributed records"
}
api_requests() {  # requests the fake logged since UNIXTIME (the agent is its only client then)
  control GET "/fake/requests?since=$1" >/dev/null
  jq '[.requests[] | select(.path | startswith("/fake/") | not)] | length' "$W/ctl.out"
}

wait_endpoint "$(now_ms)" 1 10 >/dev/null || fail "pod never traced"
send; send; send
expect_records "first sync"
ok "first sync: pod traced, 3 attributed records"

# One misbehaviour for OUTAGE_S seconds: /readyz checked every 0.25 s, a request every second.
# Prints the number of API requests the agent made meanwhile.
misbehave() {  # NAME START-CONTROL-PATH STOP-CONTROL-PATH [THEN-CONTROL-PATH]
  local name=$1 since i
  since=$(date +%s.%N)
  [ "$(control POST "$2")" = 200 ] || fail "$name: control $2: $(cat "$W/ctl.out")"
  if [ -n "${4:-}" ]; then [ "$(control POST "$4")" = 200 ] || fail "$name: control $4"; fi
  for i in $(seq $((OUTAGE_S * 4))); do
    ready || fail "$name: /readyz not 200 during the outage"
    [ $((i % 4)) = 0 ] && send
    sleep 0.25
  done
  N_REQ=$(api_requests "$since")
  [ "$(control POST "$3")" = 200 ] || fail "$name: control $3"
  # A change made the moment the API is back reaches the agent within 1 s of that moment.
  BACK_MS=$(now_ms)
  relabel other
  OUT_MS=$(wait_endpoint "$BACK_MS" 0 40) || fail "$name: relabel after the return never applied"
  # (A request the slow server accepted before it recovered is answered only when its own delay
  # is over: the fake holds each request for the latency in force when it arrived.)
  [ "$OUT_MS" -le $((1000 + ${HELD_MS:-0})) ] ||
    fail "$name: topology converged $OUT_MS ms after the API came back"
  relabel vllm
  wait_endpoint "$(now_ms)" 1 40 >/dev/null || fail "$name: relabel back never applied"
  expect_records "$name"
}
# After the API is back: the pod relabelled out of the pool, then back in; prints both times.
converge() {  # NAME
  local t0 out back
  t0=$(now_ms)
  relabel other
  out=$(wait_endpoint "$t0" 0 40) || fail "$1: relabel out never applied"
  t0=$(now_ms)
  relabel vllm
  back=$(wait_endpoint "$t0" 1 40) || fail "$1: relabel back never applied"
  CONVERGE="$out ms out, $back ms back"
  # The watches are up again (misbehave checked the change made right at the return: within
  # 1 s); a change now is one watch event away.
  [ "$out" -le 1000 ] || fail "$1: converged after $out ms"
  [ "$back" -le 1000 ] || fail "$1: converged after $back ms"
  [ -z "${OUT_MS:-}" ] || CONVERGE="$OUT_MS ms after the return, $CONVERGE later"
}
# Fewer than 10 requests a second on average: backoff, not a tight loop (which makes thousands).
no_tight_loop() {  # NAME
  [ "$N_REQ" -le $((OUTAGE_S * 10)) ] || fail "$1: $N_REQ API requests in $OUTAGE_S s (tight loop)"
  [ "$N_REQ" -ge 1 ] || fail "$1: no retry at all in $OUTAGE_S s"
}

misbehave "500s" "/fake/stop?mode=500" "/fake/start"
no_tight_loop "500s"
converge "500s"
ok "API answering 500 for ${OUTAGE_S} s: ready, $SENT attributed records, $N_REQ API requests; converged $CONVERGE"

misbehave "garbage" "/fake/stop?mode=garbage" "/fake/start"
no_tight_loop "garbage"
converge "garbage"
ok "API answering garbage for ${OUTAGE_S} s: ready, $SENT attributed records, $N_REQ API requests; converged $CONVERGE"

# Slow: every answer takes 5 s, and the open watches are cut so the agent has to ask again.
HELD_MS=5000 misbehave "slow" "/fake/latency?ms=5000" "/fake/latency?ms=0" "/fake/close-watches?mode=abrupt"
no_tight_loop "slow"
converge "slow"
ok "API answering after 5 s for ${OUTAGE_S} s: ready, $SENT attributed records, $N_REQ API requests; converged $CONVERGE"

# Down: connections refused (the fake cannot log requests it never received).
misbehave "down" "/fake/stop?mode=refuse" "/fake/start"
converge "down"
ok "API down for ${OUTAGE_S} s: ready, $SENT attributed records; converged $CONVERGE"

# A watch cut inside an event: the half object is dropped, the watch resumes.
OUT_MS=
sleep 1
[ "$(control POST "/fake/close-watches?mode=midobject")" = 200 ] || fail "close-watches midobject"
sleep 1
converge "watch cut mid-object"
send
expect_records "after the cut watch"
grep -qi 'cut-he' "$AGENT_LOG" && fail "the half object's bytes reached the agent's log"
ok "watch cut mid-object: converged $CONVERGE"

kill -0 $AGENT 2>/dev/null || fail "agent died"
ok "controlplane: all cases passed"
exit 0
