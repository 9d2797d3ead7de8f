/**
 * The stream relay's own CPU a chunk, in one process: `relayStream` over an OpenAI stream of 400 chunks (each its
 * own read, the model renamed, `usage: null` stripped), read to its end, for two checkouts taking turns.
 *
 *   bun bench/relay-cost.ts <checkout A> [checkout B]     (B: this one)
 *
 * No sockets and no HTTP: what is left is the relay's JavaScript and the stream machinery around it, which the
 * box's noise hides in `STREAMS=… bench/profile.sh` (±15% a run) and JIT compilations in `bench/instructions.sh`.
 * Prints each round's ns a chunk and the medians; the first two rounds are warm-up.
 */
import path from 'node:path'

const [a, b = '.'] = process.argv.slice(2)
if (!a) throw new Error('usage: bun bench/relay-cost.ts <checkout A> [checkout B]')

async function load(checkout: string) {
  const root = path.resolve(checkout)
  const { relayStream } = await import(path.join(root, 'src/core/stream-relay.ts'))
  const { UpstreamCall } = await import(path.join(root, 'src/core/upstream.ts'))
  const { bareHost } = await import(path.join(root, 'test/helpers/relay.ts'))
  const { attemptFor } = await import(path.join(root, 'test/helpers/adapter.ts'))
  return { relayStream, UpstreamCall, bareHost, attemptFor }
}
const sides = { A: await load(a), B: await load(b) }

const CHUNKS = 400
const STREAMS = 200
const ROUNDS = 12
const encoder = new TextEncoder()
const event = (body: string) => encoder.encode(`data: {"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-mini-2024-07-18",${body}}\n\n`)
const reads = Array.from({ length: CHUNKS }, (_, i) => event(`"choices":[{"index":0,"delta":{"content":" token${i}"},"logprobs":null,"finish_reason":null}],"usage":null`))
reads.push(event(`"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":${CHUNKS},"total_tokens":${CHUNKS + 5}}`), encoder.encode('data: [DONE]\n\n'))

async function relayOne(side: (typeof sides)['A']) {
  const attempt = side.attemptFor({ type: 'openai' }, 'gpt-4o-mini', { model: 'm', messages: [], stream: true })
  let next = 1
  const upstream = new ReadableStream<Uint8Array>({ pull: (c) => (next < reads.length ? c.enqueue(reads[next++]!) : c.close()) }, { highWaterMark: 0 })
  const body: ReadableStream<Uint8Array> = side.relayStream({
    call: new side.UpstreamCall(new AbortController().signal, 'mock'),
    reader: upstream.getReader(),
    first: reads[0],
    idleMs: 5_000,
    attempt,
    parser: null,
    host: side.bareHost,
    virtualModel: 'm',
    includeUsage: false,
    onFinish() {},
  })
  for await (const _ of body as unknown as AsyncIterable<Uint8Array>);
}

const results: Record<'A' | 'B', number[]> = { A: [], B: [] }
for (let round = 0; round < ROUNDS; round++) {
  const line: string[] = []
  for (const name of round % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const)) {
    const before = process.cpuUsage()
    for (let s = 0; s < STREAMS; s++) await relayOne(sides[name])
    const used = process.cpuUsage(before)
    const ns = ((used.user + used.system) * 1000) / (STREAMS * reads.length)
    if (round >= 2) results[name].push(ns)
    line.push(`${name} ${ns.toFixed(0)}`)
  }
  console.log(`round ${round + 1}${round < 2 ? ' (warm-up)' : ''}: ${line.join(', ')} ns a chunk`)
}
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[xs.length >> 1]!
console.log(`median: A ${median(results.A).toFixed(0)}, B ${median(results.B).toFixed(0)} ns a chunk (B/A ${(median(results.B) / median(results.A)).toFixed(3)})`)
