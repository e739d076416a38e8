#!/usr/bin/env python3
"""Open N keep-alive connections to an OpenAI-compatible server, send one short streamed chat
request on each (so a tracer sees and tracks the connection), read the whole response, then keep
every connection open and idle until stdin reaches EOF or SIGTERM/SIGINT arrives, or --hold runs out.

Prints `ready N OK FAILED` on stdout once all connections are idle.
Usage: idle_conns.py HOST PORT N [--hold SECONDS]
Standard library only; loopback benchmark helper for bench/agent/run.sh."""
import argparse
import resource
import select
import signal
import socket
import sys
import time

BODY = (b'{"model":"meta-llama/Llama-3.1-8B-Instruct","messages":[{"role":"user","content":"hi"}],'
        b'"stream":true,"stream_options":{"include_usage":true},"max_tokens":1}')


def request(host, port):
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (host.encode(), port, len(BODY))) + BODY


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("n", type=int)
    ap.add_argument("--hold", type=float, default=120.0, help="seconds to keep them open at most")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.n + 256
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(want, soft), max(hard, want)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    req = request(a.host, a.port)
    socks, ok, failed = [], 0, 0
    deadline = time.monotonic() + a.hold
    for _ in range(a.n):
        if stop or time.monotonic() > deadline:
            break
        try:
            s = socket.create_connection((a.host, a.port), timeout=10)
            s.sendall(req)
            buf = b""
            # Chunked SSE response: done at the terminal zero-length chunk.
            while not buf.endswith(b"\r\n0\r\n\r\n"):
                part = s.recv(65536)
                if not part:
                    raise OSError("closed by server")
                buf += part
            if not buf.startswith(b"HTTP/1.1 200"):
                raise OSError("status " + buf[:20].decode(errors="replace"))
            socks.append(s)
            ok += 1
        except OSError as e:
            failed += 1
            if failed <= 3:
                print(f"idle_conns: connection {ok + failed}: {e}", file=sys.stderr)
    print(f"ready {len(socks)} {ok} {failed}", flush=True)

    # Idle: wait for EOF on stdin, a signal, or the hold deadline.
    while not stop and time.monotonic() < deadline:
        r, _, _ = select.select([sys.stdin], [], [], 0.5)
        if r and not sys.stdin.buffer.read1(4096):
            break
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
