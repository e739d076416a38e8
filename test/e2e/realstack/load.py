"""Mixed client load for the real-stack end-to-end tests (docs/testing.md).

  /usr/bin/python3 load.py --plan PLAN.json --out VIEWS.jsonl

PLAN.json: {"routes": [{"name", "url", "server", "flavor"}...], "requests": N, "concurrency": C,
            "seed": S, "mode": "mixed" | "overload", "prefix": "..."}

Every request carries `x-request-id` (the key of the servers' ground truth) and, unless it is one
of the requests without `model`, a `model` unique to it (the key of the agent's records, which
carry no payload). Requests without `model` get a body length unique among them instead, and so
does every request of the overload mode, where a few models are shared as in production.

Clients, as users run them: aiohttp and httpx (keep-alive pools of C connections), curl (one
process and connection per request) and a raw slow uploader (headers first, then the body in
pieces with pauses, then a second request on the same connection) - the pattern that makes a
header-only 401 leave before the request body arrived.

One JSON line per request goes to VIEWS.jsonl: what that client sent and received.
"""

import argparse
import asyncio
import json
import random
import time

import aiohttp
import httpx


def summarize_sse(body: bytes):
    """What a client can read from an SSE body: content events, usage, error events, [DONE]."""
    s = {"content_events": 0, "error_event": False, "done": False, "input_tokens": None,
         "output_tokens": None, "response_model": None}
    for line in body.replace(b"\r\n", b"\n").split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            s["done"] = True
            continue
        try:
            j = json.loads(data)
        except ValueError:
            continue
        if not isinstance(j, dict):
            continue
        if "error" in j:
            s["error_event"] = True
        if isinstance(j.get("model"), str):
            s["response_model"] = j["model"]
        for c in j.get("choices") or []:
            d = c.get("delta") or {}
            if (isinstance(d, dict) and d.get("content")) or c.get("text"):
                s["content_events"] += 1
        u = j.get("usage")
        if isinstance(u, dict):
            s["input_tokens"] = u.get("prompt_tokens")
            s["output_tokens"] = u.get("completion_tokens")
    return s


def summarize_json(body: bytes):
    s = {"content_events": 0, "error_event": False, "done": False, "input_tokens": None,
         "output_tokens": None, "response_model": None}
    try:
        j = json.loads(body)
    except ValueError:
        return s
    if isinstance(j, dict):
        if isinstance(j.get("model"), str):
            s["response_model"] = j["model"]
        u = j.get("usage")
        if isinstance(u, dict):
            s["input_tokens"] = u.get("prompt_tokens")
            s["output_tokens"] = u.get("completion_tokens")
    return s


# ---- the plan -----------------------------------------------------------------------------------

MIXED_KINDS = [
    ("stream_usage", 22), ("stream_nousage", 8), ("completion_stream", 6), ("non_stream", 12),
    ("embeddings", 8), ("status_400", 4), ("status_404", 4), ("status_500", 3), ("status_503", 2),
    ("midstream_error", 4), ("unauthorized", 6), ("no_model_stream", 5), ("no_model_json", 4),
]

OVERLOAD_KINDS = [
    ("stream_usage", 40), ("stream_nousage", 10), ("non_stream", 15), ("embeddings", 10),
    ("status_400", 8), ("status_404", 8), ("status_500", 4),
]


def pick(rng, kinds):
    total = sum(w for _, w in kinds)
    x = rng.uniform(0, total)
    for k, w in kinds:
        x -= w
        if x <= 0:
            return k
    return kinds[-1][0]


def make_request(rng, i, route, mode, prefix, no_model_len, kind=None):
    """One request: (rid, path, headers, body dict, kind)."""
    kinds = OVERLOAD_KINDS if mode == "overload" else MIXED_KINDS
    while kind is None:
        kind = pick(rng, kinds)
        if route["flavor"] == "llamacpp" and kind in ("embeddings", "midstream_error"):
            kind = None
    rid = "%s%05d" % (prefix, i)
    h = {"x-request-id": rid, "content-type": "application/json"}
    words = " ".join("w%d" % rng.randrange(100) for _ in range(rng.randrange(2, 30)))
    if mode == "overload":
        tokens = rng.randrange(20, 120)
        h["x-test-tokens"] = str(tokens)
    else:
        tokens = rng.randrange(2, 12)
        h["x-test-tokens"] = str(tokens)
        h["x-test-ttft-ms"] = str(rng.randrange(5, 25))
        h["x-test-itl-ms"] = str(rng.randrange(1, 4))
    if route["flavor"] == "llamacpp":
        h["x-test-events-per-write"] = str(rng.randrange(1, 5))
    if mode == "overload":
        # Few models, as in production: the record of a request is found by its body length.
        model = "%s-m%d-%s" % (prefix, i % 8, route["server"])
    else:
        model = "%s-%s" % (rid, route["server"])
    path = "/v1/chat/completions"
    body = {"model": model, "messages": [{"role": "user", "content": words}], "max_tokens": tokens}
    if kind in ("stream_usage", "midstream_error", "no_model_stream"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    elif kind == "stream_nousage":
        body["stream"] = True
    elif kind == "completion_stream":
        path = "/v1/completions"
        body = {"model": model, "prompt": words, "max_tokens": tokens, "stream": True,
                "stream_options": {"include_usage": True}}
    elif kind == "embeddings":
        path = "/v1/embeddings"
        body = {"model": model, "input": [words, "second input"]}
    elif kind.startswith("status_"):
        h["x-test-status"] = kind[7:]
    elif kind == "unauthorized":
        h["authorization"] = "Bearer wrong-key"
    if kind == "midstream_error":
        h["x-test-midstream-error-after"] = str(max(1, tokens // 2))
    if mode == "overload":
        # A body length unique to this request (`user` is an OpenAI request field).
        body["user"] = ""
        base = len(json.dumps(body, separators=(",", ":")))
        body["user"] = "u" * (1000 + i - base)
    if kind.startswith("no_model"):
        del body["model"]
        # The agent's records name no request: a body length unique among these requests does.
        body["messages"][0]["content"] = "x"
        base = len(json.dumps(body, separators=(",", ":")))
        body["messages"][0]["content"] = "x" * (no_model_len - base + 1)
    return rid, path, h, body, kind


# ---- clients ------------------------------------------------------------------------------------

def view(rid, client, route, path, kind, body, raw):
    return {"rid": rid, "client": client, "route": route["name"], "server": route["server"],
            "path": path, "kind": kind, "model": body.get("model"), "request_bytes": len(raw),
            "status": 0, "stream": False, "response_bytes": 0, "elapsed_s": 0.0,
            "transport_error": None}


def finish(v, status, ctype, data, t0):
    v["elapsed_s"] = time.monotonic() - t0
    v["status"] = status
    v["stream"] = ctype.startswith("text/event-stream")
    v["response_bytes"] = len(data)
    v.update(summarize_sse(data) if v["stream"] else summarize_json(data))
    return v


async def via_aiohttp(session, url, rid, route, path, h, body, kind):
    raw = json.dumps(body, separators=(",", ":")).encode()
    v = view(rid, "aiohttp", route, path, kind, body, raw)
    t0 = time.monotonic()
    try:
        async with session.post(url + path, data=raw, headers=h) as r:
            data = b""
            async for piece in r.content.iter_any():
                data += piece
            return finish(v, r.status, r.headers.get("content-type", ""), data, t0)
    except Exception as e:  # the comparison reports it; the load goes on
        v["transport_error"] = repr(e)
        return v


async def via_httpx(client, url, rid, route, path, h, body, kind):
    # Compact like the others: body lengths are how records of requests without `model` are found.
    raw = json.dumps(body, separators=(",", ":")).encode()
    v = view(rid, "httpx", route, path, kind, body, raw)
    t0 = time.monotonic()
    try:
        async with client.stream("POST", url + path, content=raw, headers=h) as r:
            data = b""
            async for piece in r.aiter_raw():
                data += piece
            return finish(v, r.status_code, r.headers.get("content-type", ""), data, t0)
    except Exception as e:
        v["transport_error"] = repr(e)
        return v


async def via_curl(url, rid, route, path, h, body, kind):
    raw = json.dumps(body, separators=(",", ":")).encode()
    v = view(rid, "curl", route, path, kind, body, raw)
    args = ["curl", "-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code} %{content_type}",
            "--data-binary", "@-"]
    for k, val in h.items():
        args += ["-H", "%s: %s" % (k, val)]
    args.append(url + path)
    t0 = time.monotonic()
    p = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE,
                                             stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate(raw)
    nl = out.rfind(b"\n")
    if p.returncode != 0 or nl < 0:
        v["transport_error"] = "curl exit %d: %s" % (p.returncode, err.decode(errors="replace"))
        return v
    code, _, ctype = out[nl + 1:].decode().partition(" ")
    return finish(v, int(code), ctype, out[:nl], t0)


async def read_response(reader):
    """One HTTP/1.1 response (Content-Length or chunked): status, content-type, de-chunked body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdr = {}
    for ln in lines[1:]:
        k, _, val = ln.partition(":")
        hdr[k.strip().lower()] = val.strip()
    body = b""
    if hdr.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    elif "content-length" in hdr:
        body = await reader.readexactly(int(hdr["content-length"]))
    else:
        body = await reader.read()
    return status, hdr.get("content-type", ""), body, hdr.get("connection", "").lower() == "close"


async def via_slow_upload(url, rid, route, path, h, body, kind, follow):
    """Headers now, the body in four pieces 40 ms apart; the response may come before the end.
    Then `follow` (a second, ordinary request) on the same connection."""
    hostport = url.split("//", 1)[1]
    host, port = hostport.rsplit(":", 1)
    raw = json.dumps(body, separators=(",", ":")).encode()
    v = view(rid, "slow", route, path, kind, body, raw)
    views = [v]
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, int(port))
        head = "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (path, hostport, len(raw))
        head += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
        writer.write(head.encode())
        await writer.drain()
        resp = asyncio.ensure_future(read_response(reader))
        step = (len(raw) + 3) // 4
        for off in range(0, len(raw), step):
            await asyncio.sleep(0.04)
            writer.write(raw[off:off + step])
            await writer.drain()
        status, ctype, data, closing = await resp
        finish(v, status, ctype, data, t0)
        if follow is not None and not closing:
            rid2, path2, h2, body2, kind2 = follow
            raw2 = json.dumps(body2, separators=(",", ":")).encode()
            v2 = view(rid2, "slow", route, path2, kind2, body2, raw2)
            t1 = time.monotonic()
            head2 = "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n" % (path2, hostport,
                                                                              len(raw2))
            head2 += "".join("%s: %s\r\n" % kv for kv in h2.items()) + "\r\n"
            writer.write(head2.encode() + raw2)
            await writer.drain()
            status2, ctype2, data2, _ = await read_response(reader)
            views.append(finish(v2, status2, ctype2, data2, t1))
        writer.close()
        await writer.wait_closed()
    except Exception as e:
        v["transport_error"] = repr(e)
    return views


# ---- the run ------------------------------------------------------------------------------------

async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    plan = json.load(open(args.plan))
    rng = random.Random(plan.get("seed", 1))
    mode = plan.get("mode", "mixed")
    prefix = plan.get("prefix", "r")
    routes = plan["routes"]
    conc = plan.get("concurrency", 32)
    n = plan["requests"]
    out = open(args.out, "w", buffering=1)

    # Each route gets its own keep-alive pools (aiohttp and httpx), C/2 connections each.
    sessions = {}
    for r in routes:
        conn = aiohttp.TCPConnector(limit=max(1, conc // 2), force_close=False)
        sessions[r["name"]] = (
            aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)),
            httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=max(1, conc // 2),
                                                            max_keepalive_connections=conc)),
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                  timeout=aiohttp.ClientTimeout(total=60)))

    jobs = []
    follows = {}
    no_model_len = 300
    slow_count = 0
    for i in range(n):
        route = routes[i % len(routes)]
        # Every 10th request is a slow upload, on each route in turn, every other one of them a
        # header-only 401; a second, ordinary request follows on the same connection.
        slow = mode != "overload" and i % 10 == 7
        forced = None
        if slow:
            candidates = [r for r in routes if not r.get("no_slow")] or routes
            route = candidates[slow_count % len(candidates)]
            # Alternating, and shifted every round so that every route gets both.
            forced = ("unauthorized" if (slow_count + slow_count // len(candidates)) % 2 == 0
                      else None)
        rid, path, h, body, kind = make_request(rng, i, route, mode, prefix, no_model_len, forced)
        if kind.startswith("no_model"):
            no_model_len += 7
        if mode == "overload":
            # Mostly keep-alive streams; a fifth on a connection of its own, so that connections
            # also close (and their close events can be lost) while the ring overflows.
            x = rng.random()
            client = "aiohttp" if x < 0.55 else "httpx" if x < 0.8 else "aiohttp-close"
        elif slow:
            client = "slow"
            follows[len(jobs)] = make_request(rng, n + slow_count, route, mode, prefix,
                                              no_model_len)
            if follows[len(jobs)][4].startswith("no_model"):
                no_model_len += 7
            slow_count += 1
        else:
            x = rng.random()
            client = "curl" if x < 0.08 else "httpx" if x < 0.45 else "aiohttp"
        jobs.append((client, route, rid, path, h, body, kind))

    sem = asyncio.Semaphore(conc)

    async def run(j, job):
        client, route, rid, path, h, body, kind = job
        aio, hx, aio_close = sessions[route["name"]]
        if mode == "overload" and j < conc:
            # The first wave connects 3 ms apart: cpp-httplib listens with a backlog of 5.
            await asyncio.sleep(j * 0.003)
        async with sem:
            if client == "aiohttp":
                vs = [await via_aiohttp(aio, route["url"], rid, route, path, h, body, kind)]
            elif client == "aiohttp-close":
                vs = [await via_aiohttp(aio_close, route["url"], rid, route, path, h, body, kind)]
            elif client == "httpx":
                vs = [await via_httpx(hx, route["url"], rid, route, path, h, body, kind)]
            elif client == "curl":
                vs = [await via_curl(route["url"], rid, route, path, h, body, kind)]
            else:
                vs = await via_slow_upload(route["url"], rid, route, path, h, body, kind,
                                           follows.get(j))
        for v in vs:
            out.write(json.dumps(v) + "\n")

    await asyncio.gather(*(run(j, job) for j, job in enumerate(jobs) if job is not None))
    for aio, hx, aio_close in sessions.values():
        await aio.close()
        await hx.aclose()
        await aio_close.close()


if __name__ == "__main__":
    asyncio.run(main())
