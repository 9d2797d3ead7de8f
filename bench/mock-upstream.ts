/**
 * Benchmark upstream: OpenAI-compatible, deterministic, as cheap as possible so the arms measure the proxy.
 * JSON chat completions, and SSE when the request says `"stream":true` (CHUNKS chunks, INTERVAL_MS apart).
 * Usage: bun bench/mock-upstream.ts  (PORT, DELAY_MS, CHUNKS, INTERVAL_MS)
 */
const delayMs = Number(process.env.DELAY_MS ?? 0)
const chunks = Number(process.env.CHUNKS ?? 64)
const intervalMs = Number(process.env.INTERVAL_MS ?? 0)

const completion = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1700000000,
  model: 'gpt-4o-2024-08-06',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I help you today?', refusal: null }, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 10, completion_tokens: 9, total_tokens: 19 },
  system_fingerprint: 'fp_bench',
})
const encoder = new TextEncoder()
const chunk = (content: string) =>
  encoder.encode(`data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"${content}"},"logprobs":null,"finish_reason":null}]}\n\n`)
const finish = encoder.encode(
  'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}\n\n' +
    'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":64,"total_tokens":74}}\n\ndata: [DONE]\n\n',
)

function stream(): Response {
  let sent = 0
  return new Response(
    new ReadableStream({
      async pull(controller) {
        if (intervalMs > 0 && sent > 0) await Bun.sleep(intervalMs)
        if (sent < chunks) controller.enqueue(chunk(`tok${sent++} `))
        else {
          controller.enqueue(finish)
          controller.close()
        }
      },
    }),
    { headers: { 'content-type': 'text/event-stream' } },
  )
}

export function startMockUpstream(port = Number(process.env.PORT ?? 0)) {
  return Bun.serve({
    port,
    hostname: '127.0.0.1',
    idleTimeout: 0,
    async fetch(req) {
      const body = req.method === 'POST' ? await req.text() : ''
      if (delayMs > 0) await Bun.sleep(delayMs)
      if (body.includes('"stream":true')) return stream()
      return new Response(completion, { headers: { 'content-type': 'application/json' } })
    },
  })
}

if (import.meta.main) {
  const server = startMockUpstream()
  console.log(`mock upstream on http://127.0.0.1:${server.port}/v1`)
}
