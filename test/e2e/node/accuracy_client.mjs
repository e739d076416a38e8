// The official `openai` npm client as a real user of an inference gateway, for
// test/e2e/accuracy_e2e_test.cc. It sends a fixed set of requests through the gateway at
// --base-url and prints one JSON line per request with what the client itself sent and received,
// so the test can compare infertap's records with the client's view, request by request.
//
// Matching scheme: every request carries a distinct `model` (--prefix + a fixed suffix). Records
// never contain payload text, but `target_model_name` is the request body's `model`, so the model
// name is the request marker.
//
// Usage: node accuracy_client.mjs --base-url http://HOST:PORT/v1 [--prefix node-]
import OpenAI from 'openai';

function parseArgs(argv) {
  const args = {baseURL: '', prefix: 'node-'};
  for (let i = 2; i < argv.length; ++i) {
    if (argv[i] === '--base-url') args.baseURL = argv[++i];
    else if (argv[i] === '--prefix') args.prefix = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}`);
  }
  if (!args.baseURL) throw new Error('--base-url is required');
  return args;
}

const args = parseArgs(process.argv);

// What the wire carried, per request marker (the body's `model`), seen from below the SDK: the
// SDK builds the body and parses the answer, so only a fetch wrapper sees the exact bytes.
const wire = new Map();

// Counts the request body bytes handed to fetch and the response body bytes fetch delivers
// (after HTTP de-chunking, i.e. the body exactly as nginx sent it), without changing either.
//
// The wrapper also owns the abort: when the request's signal fires it cancels the response body
// itself. Node 18's fetch (undici 5) does not always tear down a response whose body is being
// read through another stream when the signal fires after the headers arrived, so the stream went
// on to the end about 3 runs in 10; cancelling the body reader closes the connection on every
// Node version, and the SDK then sees an AbortError as it would from a native abort.
async function countingFetch(url, init) {
  const body = typeof init?.body === 'string' ? init.body : '';
  let marker = '';
  try {
    marker = JSON.parse(body).model ?? '';
  } catch {
    // Not JSON: not one of ours; passed through uncounted.
  }
  const w = {requestBytes: Buffer.byteLength(body, 'utf8'), responseBytes: 0, status: 0,
             contentType: ''};
  if (marker) wire.set(marker, w);
  const res = await fetch(url, init);
  w.status = res.status;
  w.contentType = res.headers.get('content-type') ?? '';
  if (!res.body) return res;
  const reader = res.body.getReader();
  const signal = init?.signal;
  const abortError = () => Object.assign(new Error('This operation was aborted'),
                                          {name: 'AbortError'});
  let aborted = false;
  const onAbort = () => {
    aborted = true;
    reader.cancel(abortError()).catch(() => {});
  };
  if (signal) {
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, {once: true});
  }
  const counted = new ReadableStream({
    async pull(controller) {
      if (aborted) {
        controller.error(abortError());
        return;
      }
      let r;
      try {
        r = await reader.read();
      } catch (e) {
        controller.error(aborted ? abortError() : e);
        return;
      }
      if (aborted) {
        controller.error(abortError());
      } else if (r.done) {
        signal?.removeEventListener('abort', onAbort);
        controller.close();
      } else {
        w.responseBytes += r.value.byteLength;
        controller.enqueue(r.value);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return new Response(counted, {status: res.status, statusText: res.statusText,
                                headers: res.headers});
}

const client = new OpenAI({
  baseURL: args.baseURL,
  apiKey: 'dummy',
  fetch: countingFetch,
  // A retry would be a second exchange on the wire that the test does not expect.
  maxRetries: 0,
  timeout: 30_000,
});

// Sim timing for every generation request: long enough that TTFT and durations are clearly
// above the clock's resolution, short enough that the run stays fast.
const SIM_TIMING = {'x-sim-ttft-ms': '30', 'x-sim-itl-ms': '5'};

function contentOf(chunk) {
  const c = chunk.choices?.[0]?.delta?.content;
  return typeof c === 'string' && c.length > 0;
}

// Runs one request and returns the client's own view; `fn` returns {tokens, chunks, aborted}.
async function run(kind, suffix, path, stream, fn) {
  const model = args.prefix + suffix;
  const t0 = performance.now();
  const out = {client: 'node', kind, model, path, stream_requested: stream};
  try {
    Object.assign(out, await fn(model));
  } catch (e) {
    out.exception = `${e.name}: ${e.message}`;
  }
  out.elapsed_s = (performance.now() - t0) / 1000;
  const w = wire.get(model);
  if (w) {
    out.status = w.status;
    out.content_type = w.contentType;
    out.request_bytes = w.requestBytes;
    out.response_bytes = w.responseBytes;
  }
  return out;
}

function usageOf(u) {
  if (!u) return {};
  return {input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens};
}

const requests = [
  run('stream_usage', 'stream-usage', '/v1/chat/completions', true, async (model) => {
    const stream = await client.chat.completions.create(
        {model, max_tokens: 12, stream: true, stream_options: {include_usage: true},
         messages: [{role: 'user', content: 'count to twelve please'}]},
        {headers: SIM_TIMING});
    let chunks = 0, usage;
    for await (const chunk of stream) {
      if (contentOf(chunk)) ++chunks;
      if (chunk.usage) usage = chunk.usage;
    }
    return {chunks, ...usageOf(usage)};
  }),
  run('stream_no_usage', 'stream-nousage', '/v1/chat/completions', true, async (model) => {
    const stream = await client.chat.completions.create(
        {model, max_tokens: 9, stream: true,
         messages: [{role: 'system', content: 'be brief'},
                    {role: 'user', content: 'name nine colours'}]},
        {headers: SIM_TIMING});
    let chunks = 0, usage;
    for await (const chunk of stream) {
      if (contentOf(chunk)) ++chunks;
      if (chunk.usage) usage = chunk.usage;
    }
    return {chunks, ...usageOf(usage)};
  }),
  run('non_stream', 'nonstream', '/v1/chat/completions', false, async (model) => {
    const r = await client.chat.completions.create(
        {model, max_tokens: 7, messages: [{role: 'user', content: 'one two three four five'}]},
        {headers: SIM_TIMING});
    return {chunks: 0, ...usageOf(r.usage)};
  }),
  run('embeddings', 'embed', '/v1/embeddings', false, async (model) => {
    // float: the SDK would otherwise ask for base64 and decode it itself.
    const r = await client.embeddings.create(
        {model, input: ['alpha beta gamma', 'delta epsilon'], encoding_format: 'float'});
    return {chunks: 0, embeddings: r.data.length, ...usageOf(r.usage)};
  }),
  run('client_abort', 'abort', '/v1/chat/completions', true, async (model) => {
    // Long enough that the abort lands mid-stream: 200 tokens at 20 ms each.
    const stream = await client.chat.completions.create(
        {model, stream: true, messages: [{role: 'user', content: 'talk for a long time'}]},
        {headers: {'x-sim-tokens': '200', 'x-sim-ttft-ms': '30', 'x-sim-itl-ms': '20'}});
    let chunks = 0;
    try {
      for await (const chunk of stream) {
        if (contentOf(chunk)) ++chunks;
        if (chunks === 3) {
          stream.controller.abort();
          break;  // and stop reading: what an application does after cancelling
        }
      }
    } catch (e) {
      if (!(e instanceof OpenAI.APIUserAbortError) && e.name !== 'AbortError') throw e;
    }
    return {chunks, aborted: true};
  }),
];

// Concurrently, as an application would: nginx then opens several upstream connections.
for (const r of await Promise.all(requests)) console.log(JSON.stringify(r));
