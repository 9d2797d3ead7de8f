/**
 * Benchmark upstream: OpenAI-compatible, deterministic, as cheap as possible so the arms measure the proxy.
 * A chat completion (~1 KB of JSON), or SSE when the request says `"stream":true`: CHUNKS content chunks
 * INTERVAL_MS apart, then (one interval later) a finish chunk, a usage chunk and `[DONE]`.
 *
 * One process serves every scenario; each request may pick its own timing, first match wins:
 *   1. headers `x-mock-delay-ms`, `x-mock-chunks`, `x-mock-interval-ms` (for direct clients, curl, k6);
 *   2. a model name `mock-c<chunks>-i<interval ms>-d<delay ms>` anywhere in the body: it survives every
 *      gateway, which forward the model they were configured with but not arbitrary headers;
 *   3. the process defaults DELAY_MS, CHUNKS, INTERVAL_MS.
 * Usage: bun bench/mock-upstream.ts  (PORT, DELAY_MS, CHUNKS, INTERVAL_MS)
 */
export interface MockTiming {
  chunks: number
  intervalMs: number
  delayMs: number
}

/** The model name that carries a timing through any gateway to this mock. */
export const mockModel = (t: MockTiming) => `mock-c${t.chunks}-i${t.intervalMs}-d${t.delayMs}`
const MODEL_TIMING = /mock-c(\d+)-i(\d+)-d(\d+)/

const defaults: MockTiming = {
  chunks: Number(process.env.CHUNKS ?? 64),
  intervalMs: Number(process.env.INTERVAL_MS ?? 0),
  delayMs: Number(process.env.DELAY_MS ?? 0),
}

const content =
  'Hello! Here is a deterministic answer from the benchmark upstream. It is long enough to make the whole ' +
  'response about one kilobyte, which is a typical size for a short chat completion with usage, so that the ' +
  'arms pay a realistic cost for reading, rewriting and writing the body. Nothing in it depends on the ' +
  'request, the time or a random number, which keeps every run comparable with the previous ones. The rest ' +
  'is padding: lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut ' +
  'labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris.'
const completion = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1700000000,
  model: 'gpt-4o-2024-08-06',
  choices: [{ index: 0, message: { role: 'assistant', content, refusal: null }, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 10, completion_tokens: 160, total_tokens: 170 },
  system_fingerprint: 'fp_bench',
})
/**
 * A Responses API object for `POST /responses` (non-streaming; streams there are not modelled), so that a target
 * of type openai answers Conduit's Responses front door natively. Ids count up (a gateway keeps responses by id).
 */
let responses = 0
const [responseHead, responseMiddle, responseTail] = JSON.stringify({
  id: '\u0000',
  object: 'response',
  created_at: 1700000000,
  status: 'completed',
  error: null,
  incomplete_details: null,
  instructions: null,
  max_output_tokens: null,
  model: 'gpt-4o-2024-08-06',
  output: [{ type: 'message', id: '\u0000', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: content, annotations: [], logprobs: [] }] }],
  parallel_tool_calls: true,
  previous_response_id: null,
  reasoning: { effort: null, summary: null },
  store: true,
  temperature: 1,
  text: { format: { type: 'text' } },
  tool_choice: 'auto',
  tools: [],
  top_p: 1,
  truncation: 'disabled',
  usage: { input_tokens: 10, input_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 }, output_tokens: 160, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 170 },
  metadata: {},
}).split('\\u0000')
const response = () => {
  const n = String(++responses).padStart(12, '0')
  return `${responseHead}resp_bench${n}${responseMiddle}msg_bench${n}${responseTail}`
}
const encoder = new TextEncoder()
const chunk = (content: string) =>
  encoder.encode(
    `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"${content}"},"logprobs":null,"finish_reason":null}]}\n\n`,
  )
const finish = (chunks: number) =>
  encoder.encode(
    'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n' +
      `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":${chunks},"total_tokens":${chunks + 10}}}\n\ndata: [DONE]\n\n`,
  )

/** Wall-clock ms with sub-ms precision, comparable between processes on one machine. */
export const wallMs = () => performance.timeOrigin + performance.now()

/**
 * Chunks go out on a fixed schedule (first at once, then every interval from the first), not after a sleep
 * each: timer overshoot does not pile up, so a stream's total time does not drift with timer jitter. Each
 * content chunk carries its send time (`tok<n>@<wall ms>`), from which a client can tell the delivery delay.
 */
function stream(t: MockTiming, signal: AbortSignal): Response {
  let sent = 0
  let first = 0
  return new Response(
    new ReadableStream({
      async pull(controller) {
        if (sent === 0) first = performance.now()
        else if (t.intervalMs > 0) {
          const wait = first + sent * t.intervalMs - performance.now()
          if (wait > 0) await Bun.sleep(wait)
        }
        if (signal.aborted) return controller.close()
        if (sent < t.chunks) controller.enqueue(chunk(`tok${sent++}@${wallMs().toFixed(3)} `))
        else {
          controller.enqueue(finish(t.chunks))
          controller.close()
        }
      },
    }),
    { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } },
  )
}

function timingOf(req: Request, body: string): MockTiming {
  const m = body.includes('mock-c') ? MODEL_TIMING.exec(body) : null
  const t: MockTiming = m ? { chunks: Number(m[1]), intervalMs: Number(m[2]), delayMs: Number(m[3]) } : { ...defaults }
  const h = req.headers
  const delay = h.get('x-mock-delay-ms')
  const chunks = h.get('x-mock-chunks')
  const interval = h.get('x-mock-interval-ms')
  if (delay !== null) t.delayMs = Number(delay) || 0
  if (chunks !== null) t.chunks = Number(chunks) || 0
  if (interval !== null) t.intervalMs = Number(interval) || 0
  return t
}

export function startMockUpstream(port = Number(process.env.PORT ?? 0)) {
  return Bun.serve({
    port,
    hostname: '127.0.0.1',
    idleTimeout: 0,
    async fetch(req) {
      const body = req.method === 'POST' ? await req.text() : ''
      const t = timingOf(req, body)
      if (t.delayMs > 0) await Bun.sleep(t.delayMs)
      if (body.includes('"stream":true')) return stream(t, req.signal)
      return new Response(req.url.endsWith('/responses') ? response() : completion, { headers: { 'content-type': 'application/json' } })
    },
  })
}

if (import.meta.main) {
  const server = startMockUpstream()
  console.log(`mock upstream on http://127.0.0.1:${server.port}/v1`)
}
