"""A small OpenAI-compatible model server in vLLM's (or SGLang's) wire format, for the real-stack
end-to-end tests (docs/testing.md). Run it under uvicorn, with either HTTP implementation:

  REALSTACK_TRUTH=/tmp/truth.jsonl REALSTACK_FLAVOR=vllm REALSTACK_MODEL=served-vllm \
    /usr/bin/python3 -m uvicorn --app-dir test/e2e/realstack --http h11 openai_app:app

(the tests run it through serve.py, which only adds the time of the request's first read).

It generates no text worth reading: every token is the word "tok". What matters is the wire:

- vLLM (docs/wire-formats.md): streaming answers send their headers at once (before "prefill"),
  then one SSE event per HTTP chunk: a role chunk with empty content, one chunk per token, a
  finish chunk, with stream_options.include_usage a `"choices":[]` usage chunk, then
  `data: [DONE]`. Errors use the current `{"error":{...,"code":<int>}}` shape, a mid-stream error
  is a spaced `data: {"error": {...}}` event followed by [DONE] under HTTP 200, and 401 is
  `{"error":"Unauthorized"}` answered by a header-only dependency before the body is read.
- SGLang: the response `model` echoes the request's, errors are the flat legacy shape,
  `finish_reason` comes in its own chunk after an empty `choices: []` chunk, completion chunks
  carry `"usage":null`, and the headers only leave with the first chunk.

A request without `model` is answered with the served model (REALSTACK_MODEL), as both do.

Behaviour is chosen per request with headers (a test knob, not part of either server):
  x-test-status: 400|404|500|503   answer with that error instead
  x-test-tokens: N                 tokens to generate (default: max_tokens, else 8)
  x-test-ttft-ms / x-test-itl-ms   sleep before the first token / between tokens (default 0)
  x-test-midstream-error-after: N  a mid-stream error event after N tokens

Ground truth (the point of this file for the tests): one JSON line per request in
REALSTACK_TRUTH, keyed by the client's `x-request-id`, written by a plain ASGI wrapper that sees
exactly what uvicorn was given: request body bytes the app read, status, response body bytes
(de-chunked: the ASGI body messages), tokens, and CLOCK_MONOTONIC times of the start, of the
first write of an SSE event with generated content, and of the last body write. The agent's
kernel timestamps are CLOCK_MONOTONIC too, so the test compares durations directly.
"""

import asyncio
import json
import os
import threading
import time

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

FLAVOR = os.environ.get("REALSTACK_FLAVOR", "vllm")
SERVED = os.environ.get("REALSTACK_MODEL", "served-" + FLAVOR)
TRUTH_PATH = os.environ.get("REALSTACK_TRUTH", "")
API_KEY = "test-key"  # the header-based auth of `vllm serve --api-key`


class Unauthorized(Exception):
    pass


# ---- the app ----------------------------------------------------------------------------------

app_inner = FastAPI()


@app_inner.exception_handler(Unauthorized)
async def _unauthorized(_request, _exc):
    return JSONResponse({"error": "Unauthorized"}, status_code=401)


async def require_key(request: Request):
    # Headers only: the body has not been read when this answers (as vLLM's --api-key check).
    auth = request.headers.get("authorization")
    if auth is not None and auth != "Bearer " + API_KEY:
        raise Unauthorized()


def _error(status, message):
    types = {400: "BadRequestError", 404: "NotFoundError", 500: "InternalServerError",
             503: "ServiceUnavailableError"}
    err_type = types.get(status, "BadRequestError")
    if FLAVOR == "sglang":
        body = {"object": "error", "message": message, "type": err_type, "param": None,
                "code": status}
    else:
        body = {"error": {"message": message, "type": err_type, "param": None, "code": status}}
    return JSONResponse(body, status_code=status)


def _prompt_tokens(body):
    # A stand-in tokenizer: whitespace words of every message (chat) or of the prompt / input.
    words = 0
    for m in body.get("messages") or []:
        if isinstance(m, dict) and isinstance(m.get("content"), str):
            words += len(m["content"].split())
    for key in ("prompt", "input"):
        v = body.get(key)
        if isinstance(v, str):
            words += len(v.split())
        elif isinstance(v, list):
            words += sum(len(x.split()) for x in v if isinstance(x, str))
    return max(words, 1)


def _compact(obj):
    return json.dumps(obj, separators=(",", ":"))


def _controls(request, body):
    h = request.headers
    tokens = int(h.get("x-test-tokens", body.get("max_tokens") or 8))
    return {
        "status": int(h.get("x-test-status", "0")),
        "tokens": tokens,
        "ttft": float(h.get("x-test-ttft-ms", "0")) / 1000.0,
        "itl": float(h.get("x-test-itl-ms", "0")) / 1000.0,
        "midstream_after": int(h.get("x-test-midstream-error-after", "-1")),
    }


async def _read_json(request):
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class FirstChunkStreamingResponse(StreamingResponse):
    """SGLang's shape: the status line and headers leave together with the first chunk."""

    async def stream_response(self, send):
        started = False
        async for chunk in self.body_iterator:
            if not isinstance(chunk, bytes):
                chunk = chunk.encode(self.charset)
            if not started:
                await send({"type": "http.response.start", "status": self.status_code,
                            "headers": self.raw_headers})
                started = True
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not started:
            await send({"type": "http.response.start", "status": self.status_code,
                        "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _stream(request, kind, model, ctl, prompt_tokens, include_usage):
    rid = "cmpl-" + request.headers.get("x-request-id", "0")
    created = int(time.time())
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    state = request.scope["truth"]

    def chunk(choices, usage_null=FLAVOR == "sglang"):
        c = {"id": rid, "object": obj, "created": created, "model": model, "choices": choices}
        if usage_null:
            c["usage"] = None
        return "data: " + _compact(c) + "\n\n"

    def choice(text, finish=None):
        if kind == "chat":
            return {"index": 0, "delta": {"content": text}, "logprobs": None,
                    "finish_reason": finish}
        return {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}

    if kind == "chat":
        yield chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                      "finish_reason": None}])
    if ctl["ttft"] > 0:
        await asyncio.sleep(ctl["ttft"])
    sent = 0
    for i in range(ctl["tokens"]):
        if i == ctl["midstream_after"]:
            err = {"error": {"object": "error", "message": "The engine failed mid-stream.",
                             "type": "InternalServerError", "param": None, "code": 500}}
            yield "data: " + json.dumps(err) + "\n\n"
            yield "data: [DONE]\n\n"
            state["error_event"] = True
            return
        if i > 0 and ctl["itl"] > 0:
            await asyncio.sleep(ctl["itl"])
        yield chunk([choice(" tok")])
        sent += 1
    if FLAVOR == "sglang":
        yield chunk([])  # an extra choices-less chunk without usage
        yield chunk([choice("", "length")])
    else:
        yield chunk([choice("", "length")])
    if include_usage:
        usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + sent,
                 "completion_tokens": sent}
        c = {"id": rid, "object": obj, "created": created, "model": model, "choices": [],
             "usage": usage}
        yield "data: " + _compact(c) + "\n\n"
        state["input_tokens"], state["output_tokens"] = prompt_tokens, sent
    yield "data: [DONE]\n\n"


async def _generate(request, kind):
    body = await _read_json(request)
    if body is None:
        return _error(400, "The request body is not a JSON object.")
    ctl = _controls(request, body)
    if ctl["status"]:
        return _error(ctl["status"], "The test asked for status %d." % ctl["status"])
    model = body.get("model") or SERVED
    prompt_tokens = _prompt_tokens(body)
    state = request.scope["truth"]
    state["model"] = model
    if body.get("stream"):
        opts = body.get("stream_options") or {}
        gen = _stream(request, kind, model, ctl, prompt_tokens, bool(opts.get("include_usage")))
        cls = FirstChunkStreamingResponse if FLAVOR == "sglang" else StreamingResponse
        return cls(gen, media_type="text/event-stream")
    if ctl["ttft"] > 0:
        await asyncio.sleep(ctl["ttft"] + ctl["itl"] * max(ctl["tokens"] - 1, 0))
    text = " tok" * ctl["tokens"]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + ctl["tokens"],
             "completion_tokens": ctl["tokens"]}
    state["input_tokens"], state["output_tokens"] = prompt_tokens, ctl["tokens"]
    if kind == "chat":
        choices = [{"index": 0, "message": {"role": "assistant", "content": text},
                    "logprobs": None, "finish_reason": "length"}]
        obj = "chat.completion"
    else:
        choices = [{"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}]
        obj = "text_completion"
    out = {"id": "cmpl-" + request.headers.get("x-request-id", "0"), "object": obj,
           "created": int(time.time()), "model": model, "choices": choices, "usage": usage}
    return Response(_compact(out), media_type="application/json")


@app_inner.post("/v1/chat/completions", dependencies=[Depends(require_key)])
async def chat_completions(request: Request):
    return await _generate(request, "chat")


@app_inner.post("/v1/completions", dependencies=[Depends(require_key)])
async def completions(request: Request):
    return await _generate(request, "completion")


@app_inner.post("/v1/embeddings", dependencies=[Depends(require_key)])
async def embeddings(request: Request):
    body = await _read_json(request)
    if body is None:
        return _error(400, "The request body is not a JSON object.")
    ctl = _controls(request, body)
    if ctl["status"]:
        return _error(ctl["status"], "The test asked for status %d." % ctl["status"])
    inputs = body.get("input")
    inputs = inputs if isinstance(inputs, list) else [inputs]
    n = _prompt_tokens(body)
    request.scope["truth"]["input_tokens"], request.scope["truth"]["output_tokens"] = n, 0
    request.scope["truth"]["model"] = body.get("model") or SERVED
    out = {"id": "embd-" + request.headers.get("x-request-id", "0"), "object": "list",
           "created": int(time.time()), "model": body.get("model") or SERVED,
           "data": [{"index": i, "object": "embedding", "embedding": [0.25, -0.5, 0.125]}
                    for i in range(len(inputs))],
           "usage": {"prompt_tokens": n, "total_tokens": n, "completion_tokens": 0,
                     "prompt_tokens_details": None}}
    return Response(_compact(out), media_type="application/json")


@app_inner.get("/health")
async def health():
    return Response(status_code=200)


# ---- ground truth -----------------------------------------------------------------------------

_truth_lock = threading.Lock()
_truth_file = open(TRUTH_PATH, "a", buffering=1) if TRUTH_PATH else None


def _has_content(event_data):
    """The agent's definition of a content event (docs/records.md), as an independent oracle."""
    try:
        j = json.loads(event_data)
    except ValueError:
        return False
    if not isinstance(j, dict):
        return False
    for c in j.get("choices") or []:
        if not isinstance(c, dict):
            continue
        d = c.get("delta") or {}
        if isinstance(d, dict) and any(d.get(k) for k in ("content", "reasoning_content",
                                                          "reasoning", "tool_calls")):
            return True
        if c.get("text"):
            return True
    return False


async def app(scope, receive, send):
    if scope["type"] != "http":
        return await app_inner(scope, receive, send)
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    t = {"server": os.environ.get("REALSTACK_NAME", FLAVOR), "rid": headers.get("x-request-id"),
         "path": scope["path"], "app_start_ns": time.monotonic_ns(),
         # When the read that carried the request's first bytes returned (serve.py), else now.
         "start_ns": scope.get("rx_start_ns") or time.monotonic_ns(),
         "content_length": int(headers.get("content-length", "0") or 0),
         "request_bytes": 0, "request_complete_ns": None, "status": 0, "response_bytes": 0,
         "stream": False, "events": 0, "content_events": 0, "first_content_ns": None,
         "last_byte_ns": None, "input_tokens": None, "output_tokens": None,
         "error_event": False, "model": None}
    scope["truth"] = t

    async def counting_receive():
        msg = await receive()
        if msg["type"] == "http.request":
            t["request_bytes"] += len(msg.get("body", b""))
            if not msg.get("more_body", False):
                t["request_complete_ns"] = time.monotonic_ns()
        return msg

    async def truth_send(msg):
        if msg["type"] == "http.response.start":
            t["status"] = msg["status"]
            for k, v in msg.get("headers", []):
                if k.lower() == b"content-type":
                    t["stream"] = v.startswith(b"text/event-stream")
            return await send(msg)
        if msg["type"] != "http.response.body":
            return await send(msg)
        body = msg.get("body", b"")
        before = time.monotonic_ns()
        if t["stream"] and body:
            for block in body.split(b"\n\n"):
                for line in block.split(b"\n"):
                    if line.startswith(b"data:"):
                        data = line[5:].strip()
                        t["events"] += 1
                        if data != b"[DONE]" and _has_content(data):
                            t["content_events"] += 1
                            if t["first_content_ns"] is None:
                                t["first_content_ns"] = before
        t["response_bytes"] += len(body)
        if not msg.get("more_body", False):
            # The write that ends the body: the terminal chunk, or all of a sized body.
            t["last_byte_ns"] = before
        await send(msg)

    try:
        await app_inner(scope, counting_receive, truth_send)
    finally:
        t["end_ns"] = time.monotonic_ns()
        if _truth_file is not None:
            with _truth_lock:
                _truth_file.write(_compact(t) + "\n")
