#!/usr/bin/env python3
"""Writes the seed corpora under test/fuzz/corpus/<target>/ from test/fixtures/wire and the
unit tests' edge cases. Re-run after adding fixtures; the output is committed."""
import gzip
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
WIRE = os.path.normpath(os.path.join(HERE, "..", "fixtures", "wire"))


def fixture(name):
    with open(os.path.join(WIRE, name), "rb") as f:
        return f.read()


def post(path, body, extra=b""):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def resp(status, body, extra=b""):
    return (b"HTTP/1.1 " + str(status).encode() + b" X\r\n" + extra + b"content-length: " +
            str(len(body)).encode() + b"\r\ncontent-type: application/json\r\n\r\n" + body)


def chunk(p):
    return b"%x\r\n" % len(p) + p + b"\r\n"


def sse_resp(events):
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\n\r\n")
    return head + b"".join(chunk(e) for e in events) + b"0\r\n\r\n"


def split_events(sse):
    return [e + b"\n\n" for e in sse.split(b"\n\n") if e]


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def op(kind, payload=b"", length=None, dt=1):
    n = len(payload) if length is None else length
    return bytes([kind + 6 * dt]) + struct.pack("<H", n) + payload


chat_req = post(b"/v1/chat/completions", fixture("vllm_chat_request_stream_include_usage.json"))
stream_http = fixture("vllm_chat_stream_include_usage.http")
nonstream_http = fixture("vllm_chat_nonstream_response.http")
err_http = fixture("vllm_error_400_context_length.http")
gz_body = gzip.compress(fixture("vllm_chat_nonstream_response.json"))

# HTTP parser: [flags][piece-1][gap period] + stream.
write("http", "req_stream", b"\x00\x07\x00" + chat_req)
write("http", "req_pipelined", b"\x00\xff\x00" + chat_req + b"GET /metrics HTTP/1.1\r\n\r\n" + chat_req)
write("http", "req_expect", b"\x00\x00\x00" + post(b"/v1/completions", b"{}", b"Expect: 100-continue\r\n"))
write("http", "resp_stream", b"\x01\x0d\x00" + stream_http)
write("http", "resp_nonstream", b"\x01\xff\x00" + nonstream_http)
write("http", "resp_interim", b"\x01\x03\x00HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n" + err_http)
write("http", "resp_close_delimited", b"\x01\x05\x00HTTP/1.0 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: x\n\n")
write("http", "resp_gap", b"\x01\x10\x03" + stream_http + nonstream_http)
write("http", "garbage_resync", b"\x00\x02\x00\x16\x03\x01garbage\r\n}" + chat_req)

# SSE parser: [piece-1][cap/8] + stream.
for name in ["vllm_chat_stream_include_usage.sse", "vllm_chat_stream_continuous_usage.sse",
             "vllm_chat_stream_midstream_error.sse", "vllm_responses_stream_abbreviated.sse",
             "vllm_completions_stream_include_usage.sse"]:
    write("sse", name.replace(".sse", ""), b"\x0b\xff" + fixture(name))
write("sse", "line_ends", b"\x00\x10data: a\r\rdata: b\r\n\r\n: c\n\nevent: e\nid: 1\nretry: 10\ndata:x\n\n")
write("sse", "llama_error", b"\x03\x20data: {}\n\nerror: {\"code\":500}\n\ndata: [DONE]")
write("sse", "oversize", b"\x07\x01data: " + b"x" * 300 + b"\n\ndata: ok\n\n")

# OpenAI extraction: raw JSON.
for name in sorted(os.listdir(WIRE)):
    if name.endswith(".json") and not name.endswith(".parsed.json"):
        write("openai", name.replace(".json", ""), fixture(name))
for i, line in enumerate(fixture("vllm_responses_stream_abbreviated.sse").split(b"\n")):
    if line.startswith(b"data: "):
        write("openai", "responses_event_%d" % i, line[6:])
write("openai", "truncated", b'{"model":"m","messages":[{"content":"abc')
write("openai", "tool_calls", b'{"choices":[{"delta":{"tool_calls":[{"index":0}],"reasoning":"r"}}],"usage":null}')

# Exchange assembler: scripted operations.
write("exchange", "stream", op(0, chat_req) + b"".join(
    op(1, stream_http[i:i + 97]) for i in range(0, len(stream_http), 97)) + op(4))
write("exchange", "nonstream_keepalive", op(0, chat_req) + op(1, nonstream_http) +
      op(0, b"GET /health HTTP/1.1\r\n\r\n") + op(1, resp(200, b"ok")) + op(0, chat_req) +
      op(1, err_http))
write("exchange", "pipelined", op(0, chat_req + chat_req) + op(1, nonstream_http + err_http))
write("exchange", "gaps", op(0, chat_req[:100]) + op(2, length=50) + op(0, chat_req[150:]) +
      op(0, chat_req) + op(1, stream_http[:500]) + op(3, length=20) + op(1, stream_http[520:]) +
      op(1, nonstream_http) + op(1, nonstream_http))
write("exchange", "gzip", op(0, post(b"/v1/completions", b'{"model":"m"}')) +
      op(1, resp(200, gz_body, b"Content-Encoding: gzip\r\n")))
write("exchange", "midstream_error", op(0, chat_req) +
      op(1, sse_resp(split_events(fixture("vllm_chat_stream_midstream_error.sse")))))
write("exchange", "responses_api", op(0, post(b"/v1/responses", b'{"model":"m","stream":true}')) +
      op(1, sse_resp(split_events(fixture("vllm_responses_stream_abbreviated.sse")))))
write("exchange", "expect_continue", op(0, post(b"/v1/completions", b'{"model":"m"}',
                                                b"Expect: 100-continue\r\n")) +
      op(1, b"HTTP/1.1 100 Continue\r\n\r\n") + op(1, nonstream_http) + op(4) + op(5, chat_req + nonstream_http))
# cgroup backend ring records (struct it_skb_event, bpf/infertap_abi.h), framed [u16 len][record].
def skb(ingress, seq, ack, flags, payload=b"", ts=1000, port=40000, drop=()):
    out = b""
    pieces = [payload[i:i + 4096] for i in range(0, len(payload), 4096)] or [b""]
    for i, piece in enumerate(pieces):
        if i in drop:
            continue
        src, dst = (b"\x02", b"\x01") if ingress else (b"\x01", b"\x02")
        addr = lambda last: b"\x00" * 10 + b"\xff\xff\x0a\x00\x00" + last
        rec = struct.pack("<HHBBBBIIQQ16s16sHHHHIIII", 4, 1, 0 if ingress else 1, 2, flags, 0, 1,
                          len(payload), ts, 7, addr(src), addr(dst),
                          port if ingress else 8000, 8000 if ingress else port, 65535, 0,
                          seq, ack, i * 4096, len(piece)) + piece
        out += struct.pack("<H", len(rec)) + rec
    return out


SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
big = stream_http * 30
write("skb", "stream", skb(True, 100, 0, SYN) + skb(False, 900, 101, SYN | ACK) +
      skb(True, 101, 901, ACK, chat_req, 2000) + skb(False, 901, 101 + len(chat_req), ACK, big, 3000) +
      skb(True, 101 + len(chat_req), 901 + len(big), ACK | FIN, b"", 4000) +
      skb(False, 901 + len(big), 102 + len(chat_req), ACK | FIN, b"", 4000))
write("skb", "lost_pieces", skb(True, 100, 0, SYN) + skb(True, 101, 901, ACK, chat_req, 2000) +
      skb(False, 901, 101 + len(chat_req), ACK | FIN, big, 3000, drop=(1, 3)) +
      skb(True, 101 + len(chat_req), 902 + len(big), ACK | FIN, b"", 100000000))
write("skb", "midstream_rst", skb(True, 5000, 77, ACK, chat_req[40:], 10, 41000) +
      skb(False, 77, 5000, ACK | RST, b"", 20, 41000) + skb(True, 1, 0, SYN, b"", 30, 41000))
print("seeds written under", os.path.join(HERE, "corpus"), file=sys.stderr)
