#!/usr/bin/env bash
# Builds the libFuzzer targets of test/fuzz/ with clang (-fsanitize=fuzzer,address,undefined)
# into fuzz-build/ and runs one of them.
#
#   scripts/fuzz.sh                     list the targets
#   scripts/fuzz.sh <target> <seconds>  build, then fuzz <target> for <seconds>
#
# The working corpus lives in fuzz-build/corpus/<target> (seeded from test/fuzz/corpus/<target>);
# crashes land in fuzz-build/artifacts/<target>/. Copy interesting new inputs back into
# test/fuzz/corpus/<target>/ by hand (keep it small): that directory is replayed by CTest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/fuzz-build"
TARGETS=(http sse openai stream_events exchange promtext serve_head capture pcap skb)
CXX="${CXX_FUZZ:-clang++}"
CC="${CC_FUZZ:-clang}"
SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"

if [[ $# -eq 0 ]]; then
  printf '%s\n' "${TARGETS[@]}"
  exit 0
fi
if [[ $# -ne 2 || ! "$2" =~ ^[0-9]+$ ]]; then
  echo "usage: $0 [<target> <seconds>]   (targets: ${TARGETS[*]})" >&2
  exit 2
fi
target="$1"
seconds="$2"
if [[ ! " ${TARGETS[*]} " =~ " ${target} " ]]; then
  echo "unknown target '$target' (targets: ${TARGETS[*]})" >&2
  exit 2
fi

mkdir -p "$OUT/obj" "$OUT/corpus/$target" "$OUT/artifacts/$target"

# llhttp is third-party C: instrumented for coverage and ASan, but not held to our warnings.
LLHTTP_LIB="$OUT/obj/libllhttp_fuzz.a"
if [[ ! -f "$LLHTTP_LIB" ]]; then
  for f in llhttp api http; do
    "$CC" -O1 -g -fsanitize=fuzzer-no-link,address,undefined -w -I/usr/share/include/llhttp \
      -c "/usr/share/llhttp/$f.c" -o "$OUT/obj/llhttp_$f.o"
  done
  ar rcs "$LLHTTP_LIB" "$OUT"/obj/llhttp_{llhttp,api,http}.o
fi

bin="$OUT/fuzz_$target"
libs=(-lsimdjson -lz)
tracker_srcs=("$ROOT"/agent/capture/{abi,endpoint_map,capture_file,reassembler,connection,tracker,summary}.cc
              "$ROOT"/agent/common/{status,log}.cc)
if [[ "$target" == promtext ]]; then
  srcs=("$ROOT/parsers/promtext/promtext.cc" "$ROOT/test/fuzz/fuzz_promtext.cc")
elif [[ "$target" == serve_head ]]; then
  srcs=("$ROOT"/agent/serve/{head_parser,http_message}.cc "$ROOT/test/fuzz/fuzz_serve_head.cc")
elif [[ "$target" == capture ]]; then
  srcs=("${tracker_srcs[@]}" "$ROOT/test/fuzz/fuzz_capture.cc")
elif [[ "$target" == pcap ]]; then
  srcs=("${tracker_srcs[@]}" "$ROOT"/agent/replay/{packet,tcp_flows,pcap_replay}.cc
        "$ROOT/test/fuzz/fuzz_pcap.cc")
  libs+=(-lpcap)
elif [[ "$target" == skb ]]; then
  srcs=("${tracker_srcs[@]}" "$ROOT"/agent/replay/{packet,tcp_flows}.cc
        "$ROOT"/agent/capture/{skb_events,skb_flows}.cc "$ROOT/test/fuzz/fuzz_skb.cc")
else
  srcs=("$ROOT"/parsers/{exchange,http_parser,inflate,openai,record,sse_parser}.cc
        "$ROOT/test/fuzz/fuzz_$target.cc")
fi
newest=$(ls -t "${srcs[@]}" "$ROOT"/parsers/*.hpp "$ROOT"/agent/*/*.hpp "$ROOT"/test/fuzz/*.hpp |
  head -1)
if [[ ! -x "$bin" || "$newest" -nt "$bin" ]]; then
  echo "building $bin" >&2
  # shellcheck disable=SC2086
  "$CXX" -std=c++20 -O1 -g $SAN -Wall -Wextra -Werror -Wno-missing-field-initializers \
    -I"$ROOT" -I"$ROOT/test/fuzz" -isystem /usr/share/include/llhttp \
    "${srcs[@]}" "$LLHTTP_LIB" "${libs[@]}" -o "$bin"
fi

cp -n "$ROOT/test/fuzz/corpus/$target/"* "$OUT/corpus/$target/" 2>/dev/null || true
exec "$bin" "$OUT/corpus/$target" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
  -timeout=10 -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$target/"
