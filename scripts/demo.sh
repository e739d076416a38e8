#!/usr/bin/env bash
# `make demo`: model-server simulator behind nginx (the gateway), the agent tracing the
# simulator's sockets, a mixed load through the gateway, then one `infertap top` frame and the
# key /metrics lines. Everything it starts is stopped when it ends or on Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
[ -d "$build" ] || build=$here/$build

if [ "$(id -u)" -ne 0 ]; then
  echo "demo: the agent needs root (BPF); re-running with sudo" >&2
  exec sudo -E bash "$0" "$@"
fi

SIM=127.0.0.1:18000 GW=127.0.0.1:18080 METRICS=127.0.0.1:19090 INSPECT=127.0.0.1:19091
for p in 18000 18080 19090 19091; do
  if ss -ltn "sport = :$p" | grep -q LISTEN; then
    echo "demo: port $p is in use; stop whatever listens there (ss -ltnp 'sport = :$p')" >&2
    exit 1
  fi
done

tmp=$(mktemp -d /tmp/infertap-demo.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  [ -f "$tmp/nginx.pid" ] && kill "$(cat "$tmp/nginx.pid")" 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, cleaning up"; exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_for() { # url, what
  for _ in $(seq 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "demo: $2 did not come up ($1); its log:" >&2; cat "$3" >&2 || true; exit 1
}

step "model-server simulator (vLLM wire format) on $SIM"
"$build/infertap-sim" --listen $SIM --ttft-ms 60 --itl-ms 10 --max-running 6 --kv-capacity-tokens 1000 \
  --model meta-llama/Llama-3.1-8B-Instruct > "$tmp/sim.log" 2>&1 &
pids+=($!)
wait_for "http://$SIM/health" "infertap-sim" "$tmp/sim.log"

step "nginx as the inference gateway on $GW → $SIM"
mkdir -p "$tmp/nginx/logs"
cat > "$tmp/nginx.conf" <<NGINX
worker_processes 1;
user root;
pid $tmp/nginx.pid;
error_log $tmp/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $tmp/nginx/body;
  proxy_temp_path $tmp/nginx/proxy;
  fastcgi_temp_path $tmp/nginx/fastcgi;
  uwsgi_temp_path $tmp/nginx/uwsgi;
  scgi_temp_path $tmp/nginx/scgi;
  upstream model_servers { server $SIM; keepalive 32; }
  server {
    listen $GW;
    location / {
      proxy_pass http://model_servers;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
NGINX
nginx -p "$tmp/nginx" -c "$tmp/nginx.conf" -g 'daemon off;' > "$tmp/nginx.out" 2>&1 &
pids+=($!)
wait_for "http://$GW/health" "nginx" "$tmp/nginx/logs/error.log"

step "infertap run: tracing the simulator's sockets (no gateway change)"
"$build/infertap" run --target $SIM --pool demo-pool --metrics-auth none \
  --metrics-addr $METRICS --inspect-addr $INSPECT \
  --model-alias meta-llama/Llama-3.1-8B-Instruct=llama-3.1-8b > "$tmp/agent.log" 2>&1 &
pids+=($!)
for _ in $(seq 150); do curl -fs -o /dev/null "http://$METRICS/readyz" && break; sleep 0.1; done
curl -fs -o /dev/null "http://$METRICS/readyz" || { echo "demo: agent not ready:" >&2; cat "$tmp/agent.log" >&2; exit 1; }
sed 's/^/  /' "$tmp/agent.log"

step "load through the gateway: 8 streaming clients for 8 s, plus errors and non-streaming calls"
"$build/infertap-load" --url "http://$GW/v1/chat/completions" -c 8 -d 8 --stream --include-usage \
  --tokens 24 > "$tmp/load.json" 2> "$tmp/load.err" &
load=$!
extra=0
chat='{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"hello demo"}],"max_tokens":8}'
for i in 1 2 3; do
  curl -s -o /dev/null -H 'content-type: application/json' -d "$chat" "http://$GW/v1/chat/completions"; extra=$((extra+1))
  curl -s -o /dev/null -H 'x-sim-status: 429' -H 'content-type: application/json' -d "$chat" "http://$GW/v1/chat/completions"; extra=$((extra+1))
done
curl -s -o /dev/null -H 'x-sim-status: 500' -H 'content-type: application/json' -d "$chat" "http://$GW/v1/chat/completions"; extra=$((extra+1))
sleep 4

step "infertap top --once (one frame while the load runs)"
"$build/infertap" top --once --agent "http://$INSPECT" || echo "demo: infertap top failed"

wait $load || true
sleep 2  # let the last records and a pool scrape land
sent=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$tmp/load.json" 2>/dev/null || echo "?")

step "key lines of http://$METRICS/metrics"
curl -s "http://$METRICS/metrics" | grep -E '^(inference_model_request_total|inference_model_request_error_total|inference_model_(input|output)_tokens_sum|inference_model_request_ttft_seconds_(sum|count)|inference_model_request_duration_seconds_count|inference_pool_|infertap_capture_lost_events_total)' | sed 's/^/  /'

counted=$(curl -s "http://$METRICS/metrics" | awk '/^inference_model_request_total/ {s += $NF} END {print s+0}')
step "check"
echo "  clients sent $sent streaming + $extra other requests = $((${sent/\?/0} + extra)); the agent counted $counted"
if [ "$sent" != "?" ] && [ "$counted" -eq $((sent + extra)) ]; then
  echo "  ✓ every request counted exactly once"
else
  echo "  ✗ counts differ (see $tmp/agent.log)"; exit 1
fi
