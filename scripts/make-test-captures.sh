#!/usr/bin/env bash
# Regenerates the infertap capture files under test/replay/data/ (root: real BPF capture).
# Traffic: infertap-sim on 127.0.0.1:18201 driven by curl, captured by `infertap capture`.
# Usage: sudo scripts/make-test-captures.sh [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
out=$here/test/replay/data
port=18201
url=http://127.0.0.1:$port
model=meta-llama/Llama-3.1-8B-Instruct
mkdir -p "$out"

"$build/infertap-sim" --listen 127.0.0.1:$port --ttft-ms 20 --itl-ms 2 > /tmp/mkcap-sim.log 2>&1 &
sim=$!
trap 'kill $sim 2>/dev/null || true; kill $cap 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening /tmp/mkcap-sim.log && break; sleep 0.1; done

"$build/infertap" capture --target 127.0.0.1:$port -o "$out/sim_mixed.cap.tmp" 2> /tmp/mkcap.log &
cap=$!
for _ in $(seq 100); do grep -q capturing /tmp/mkcap.log && break; sleep 0.1; done

chat() { # $1 = extra curl args, $2 = json body
  curl -sS -N -o /dev/null $1 -H 'content-type: application/json' -d "$2" "$url/v1/chat/completions"
}
# 1: streaming chat with usage, 7 tokens, prompt "count the words here please" (5 words)
chat "-H x-sim-tokens:7" '{"model":"'$model'","messages":[{"role":"user","content":"count the words here please"}],"stream":true,"stream_options":{"include_usage":true}}'
# 2: non-streaming chat, 3 tokens, prompt of 2 words
chat "-H x-sim-tokens:3" '{"model":"'$model'","messages":[{"role":"user","content":"hi there"}]}'
# 3: 429 for another model name
chat "-H x-sim-status:429" '{"model":"other-model","messages":[{"role":"user","content":"x"}]}'
# 4: streaming with a mid-stream error after 2 tokens
chat "-H x-sim-tokens:6 -H x-sim-midstream-error-after:2" '{"model":"'$model'","messages":[{"role":"user","content":"a b c"}],"stream":true}'
# 5: embeddings, 4-word input
curl -sS -o /dev/null -H 'content-type: application/json' -d '{"model":"'$model'","input":"one two three four"}' "$url/v1/embeddings"
# 6: not inference traffic
curl -sS -o /dev/null "$url/v1/models"
sleep 0.5
kill -INT $cap; wait $cap || true
mv "$out/sim_mixed.cap.tmp" "$out/sim_mixed.cap"
echo "wrote $out/sim_mixed.cap ($(stat -c %s "$out/sim_mixed.cap") bytes)"
