import { describe, expect, test } from 'bun:test'
import fc from 'fast-check'
import { SseDecoder } from '../../src/core/sse/decoder.ts'
import { relayStream, type StreamOutcome } from '../../src/core/stream-relay.ts'
import { UpstreamCall } from '../../src/core/upstream.ts'
import anthropic from '../../src/providers/anthropic/index.ts'
import { attemptFor, registeredAdapter } from '../helpers/adapter.ts'
import { validateSchema, validateSseBody } from '../helpers/openapi.ts'
import { bareHost, CLIENT_MODEL, fixtureBytes, ignoreCreated, relayRecorded, replayEverySplit } from '../helpers/relay.ts'

/**
 * The real relay (the code between upstream bytes and the client) fed recorded streams split at every byte
 * offset: the client must receive the same bytes whatever the network did to multi-byte characters.
 */
const anthropicAdapter = await registeredAdapter(anthropic)

describe('relay split at every byte offset', () => {
  test('OpenAI passthrough: bytes forwarded unchanged except the model name', async () => {
    const bytes = await fixtureBytes('openai-chat-stream.sse')
    const original = new TextDecoder().decode(bytes)
    const { text, outcome } = await replayEverySplit(bytes, { includeUsage: true, normalise: ignoreCreated })
    expect(text).toBe(original.replaceAll('"model":"gpt-4o-2024-08-06"', `"model":"${CLIENT_MODEL}"`))
    expect(outcome.usage!.total_tokens).toBeGreaterThan(0)
  })

  test('OpenAI passthrough without include_usage: usage chunk and usage:null fields removed, usage still counted', async () => {
    const { text, outcome } = await replayEverySplit(await fixtureBytes('openai-chat-stream.sse'), { includeUsage: false, normalise: ignoreCreated })
    expect(text).not.toContain('"usage"')
    expect(text).not.toContain('"choices":[]')
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
    expect(outcome.usage!.total_tokens).toBeGreaterThan(0)
  })

  test('JSON written with a space after each colon (Python servers): usage read, not estimated; its chunk removed unless asked; a finished stream without [DONE] ends cleanly', async () => {
    // json.dumps' default separators: ', ' and ': '.
    const pyDumps = (v: any): string =>
      Array.isArray(v) ? `[${v.map(pyDumps).join(', ')}]` : v && typeof v === 'object' ? `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyDumps(x)}`).join(', ')}}` : JSON.stringify(v)
    const compact = new TextDecoder().decode(await fixtureBytes('openai-chat-stream.sse'))
    const events = compact.split('\n\n').filter((e) => e.startsWith('data: {'))
    const spaced = (done: boolean) => new TextEncoder().encode(events.map((e) => `data: ${pyDumps(JSON.parse(e.slice(6)))}\n\n`).join('') + (done ? 'data: [DONE]\n\n' : ''))
    const reported = JSON.parse(events.at(-1)!.slice(6)).usage
    for (const done of [true, false]) {
      const { text, outcome } = await replayEverySplit(spaced(done), { includeUsage: false, normalise: ignoreCreated })
      expect([done, outcome.usage]).toEqual([done, reported])
      expect(text).not.toContain('"choices": []')
      expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
    }
  })

  test('OpenAI tool-call stream', async () => {
    const { text } = await replayEverySplit(await fixtureBytes('openai-tool-stream.sse'), { includeUsage: true, normalise: ignoreCreated })
    expect(text).toContain('"finish_reason":"tool_calls"')
  })

  test('Anthropic translation: same chunks whatever the split', async () => {
    const { chunks, outcome } = await replayEverySplit(await fixtureBytes('anthropic-stream.sse'), {
      adapter: anthropicAdapter.chat,
      includeUsage: true,
      normalise: ignoreCreated,
    })
    expect(chunks.every((c) => c.model === CLIENT_MODEL)).toBe(true)
    expect(outcome.usage!.completion_tokens).toBeGreaterThan(0)
  }, 30_000)
})

/** `bytes` cut into pieces of 1–7 bytes, their sizes drawn from `seed`. */
function slices(bytes: Uint8Array, seed: number): Uint8Array[] {
  const parts: Uint8Array[] = []
  let state = seed >>> 0 || 1
  for (let at = 0; at < bytes.length; ) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0
    const size = 1 + ((state >>> 16) % 7)
    parts.push(bytes.subarray(at, at + size))
    at += size
  }
  return parts
}

/**
 * BU7: frames split anywhere by the network, as a slicing proxy would (1–7 byte pieces), through the whole relay
 * (framing, passthrough or translation, usage accounting): the client gets the same text, the same events and
 * the same usage as from the unsplit stream, over 200 random slicings per stream.
 */
describe('BU7: 200 random slicings into 1–7 byte pieces', () => {
  const cases = [
    { name: 'OpenAI passthrough with include_usage', fixture: 'openai-chat-stream.sse', usage: true, options: { includeUsage: true } },
    { name: 'OpenAI passthrough without include_usage (usage chunk stripped, still counted)', fixture: 'openai-chat-stream.sse', usage: true, options: { includeUsage: false } },
    { name: 'OpenAI tool-call passthrough', fixture: 'openai-tool-stream.sse', usage: false, options: { includeUsage: true } },
    { name: 'Anthropic translation', fixture: 'anthropic-stream.sse', usage: true, options: { includeUsage: true, adapter: anthropicAdapter.chat } },
  ]
  for (const { name, fixture, usage, options } of cases) {
    test(name, async () => {
      const bytes = await fixtureBytes(fixture)
      const whole = await relayRecorded([bytes], options)
      expect(whole.outcome.error).toBeNull()
      const events = validateSseBody(whole.text, 'CreateChatCompletionStreamResponse')
      expect(whole.outcome.usage !== null).toBe(usage)
      await fc.assert(
        fc.asyncProperty(fc.integer(), async (seed) => {
          const split = await relayRecorded(slices(bytes, seed), options)
          expect(ignoreCreated(split.text)).toBe(ignoreCreated(whole.text))
          expect(validateSseBody(split.text, 'CreateChatCompletionStreamResponse').map((c) => ({ ...c, created: 0 }))).toEqual(events.map((c) => ({ ...c, created: 0 })))
          expect(split.outcome).toEqual(whole.outcome)
        }),
        { numRuns: 200 },
      )
    }, 60_000)
  }
})

/** The relay in front of `upstream`, as the pipeline wires it for an OpenAI-compatible provider. */
async function relayUpstream(upstream: ReadableStream<Uint8Array>, maxEventBytes: number) {
  const reader = upstream.getReader() as ReadableStreamDefaultReader<Uint8Array>
  const first = await reader.read()
  const finished: { outcome?: StreamOutcome } = {}
  const attempt = attemptFor({ type: 'openai' }, 'gpt-4o', { model: CLIENT_MODEL, stream: true })
  const relayed = relayStream({
    call: new UpstreamCall(new AbortController().signal, 'p'),
    reader,
    first: first.value!,
    idleMs: 5_000,
    attempt,
    parser: null,
    host: bareHost,
    virtualModel: CLIENT_MODEL,
    includeUsage: true,
    maxEventBytes,
    onFinish: (outcome) => (finished.outcome = outcome),
  })
  const text = await new Response(relayed).text()
  return { text, outcome: finished.outcome! }
}

const chunk = (content: string) =>
  `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"${content}"},"finish_reason":null}]}\n\n`
const encode = (text: string) => new TextEncoder().encode(text)

describe('one upstream event has a size cap', () => {
  const CAP = 64 * 1024

  test('an event larger than the cap ends the stream with a 502 error event after the events before it', async () => {
    const huge = chunk('x'.repeat(CAP))
    const upstream = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encode(chunk('before')))
        controller.enqueue(encode(chunk('same read') + huge + chunk('after')))
        controller.close()
      },
    })
    const { text, outcome } = await relayUpstream(upstream, CAP)
    const decoder = new SseDecoder()
    const events = [...decoder.push(text), ...decoder.flush()].map((e) => JSON.parse(e.data))
    expect(events.slice(0, 2).map((e) => e.choices[0].delta.content)).toEqual(['before', 'same read'])
    expect(events.slice(0, 2).every((e) => e.model === CLIENT_MODEL)).toBe(true)
    expect(events).toHaveLength(3)
    validateSchema('ErrorResponse', events[2])
    expect(events[2].error.code).toBe('upstream_event_too_large')
    expect(outcome.error?.status).toBe(502)
    expect(outcome.error?.code).toBe('upstream_event_too_large')
  })

  test('a line that never ends is cut off at the cap: the upstream is cancelled, not read without bound', async () => {
    let sent = 0
    let cancelled = false
    const piece = encode('x'.repeat(4096))
    const upstream = new ReadableStream<Uint8Array>(
      {
        start(controller) {
          controller.enqueue(encode(chunk('hello') + 'data: {"id":"c2","choices":[{"delta":{"content":"'))
        },
        pull(controller) {
          sent += piece.length
          controller.enqueue(piece)
        },
        cancel() {
          cancelled = true
        },
      },
      { highWaterMark: 0 },
    )
    const { text, outcome } = await relayUpstream(upstream, CAP)
    expect(text.startsWith(chunk('hello').replace('"gpt-4o"', `"${CLIENT_MODEL}"`))).toBe(true)
    expect(text).toContain('"code":"upstream_event_too_large"')
    expect(outcome.error?.code).toBe('upstream_event_too_large')
    expect(cancelled).toBe(true)
    // It stopped at the cap: at most the cap and one piece more were read.
    expect(sent).toBeLessThanOrEqual(CAP + piece.length)
  })
})

describe('model splice in bytes', () => {
  const run = async (events: string, includeUsage: boolean, virtualModel = CLIENT_MODEL) =>
    (await relayRecorded([encode(events)], { includeUsage, virtualModel })).text

  test('a longer virtual model name, an escaped quote in the upstream one, and usage:null before the model key', async () => {
    const events =
      'data: {"id":"c","usage":null,"model":"gpt-\\"4o\\"","choices":[{"index":0,"delta":{"content":"é🌍"},"finish_reason":null}]}\n\n' +
      'data: {"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n' +
      'data: [DONE]\n\n'
    const name = 'a-much-longer-virtual-model-name-than-upstream'
    expect(await run(events, false, name)).toBe(events.replaceAll(',"usage":null', '').replace('"gpt-\\"4o\\""', `"${name}"`).replace('"gpt-4o"', `"${name}"`))
    expect(await run(events, true, name)).toBe(events.replace('"gpt-\\"4o\\""', `"${name}"`).replace('"gpt-4o"', `"${name}"`))
  })

  test('what is enqueued for the client holds about its own size in memory, not a fixed 4 KiB a read', async () => {
    const event = (i: number) => `data: {"id":"c","model":"upstream-model","choices":[{"index":0,"delta":{"content":"token ${i}"},"finish_reason":null}]}\n\n`
    const parts = Array.from({ length: 5 }, (_, i) => encode(event(i)))
    const { enqueued } = await relayRecorded([...parts, encode('data: [DONE]\n\n')], { includeUsage: true })
    expect(enqueued.length).toBeGreaterThanOrEqual(5)
    // The relay reserves each read's size plus room for the model name per event; no more stays behind a chunk.
    for (const chunk of enqueued) expect(chunk.buffer.byteLength).toBeLessThan(chunk.byteLength + 64)
  })

  test('an event without a model key, a comment and a non-JSON event pass unchanged', async () => {
    const events = ': keep-alive\n\ndata: {"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\ndata: not json\n\ndata: [DONE]\n\n'
    expect(await run(events, true)).toBe(events)
  })
})

describe('a provider that names its error event', () => {
  // vLLM-style servers, proxies and TGI: `event: error` with the error object, plain text, or `{"error":"…"}`.
  const cases = [
    ['event: error\ndata: {"message":"Model overloaded","type":"overloaded_error","code":"overloaded"}\n\n', 'Model overloaded', 'overloaded'],
    ['event: error\ndata: worker crashed\n\n', 'worker crashed', 'upstream_error'],
    ['data: {"error":"Input validation error: too many tokens","error_type":"validation"}\n\n', 'Input validation error: too many tokens', 'upstream_error'],
  ] as const
  for (const [errorEvent, message, code] of cases) {
    test(`${JSON.stringify(errorEvent.slice(0, 40))}…: the client gets an error event, not a chunk; the outcome is the provider's error`, async () => {
      const events = 'data: {"id":"c","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n' + errorEvent
      const { text, outcome } = await relayRecorded([encode(events)], { includeUsage: true })
      const decoder = new SseDecoder()
      const sent = [...decoder.push(text), ...decoder.flush()].map((e) => JSON.parse(e.data))
      expect(sent).toHaveLength(2)
      expect(sent[0].choices[0].delta.content).toBe('hi')
      validateSchema('ErrorResponse', sent[1])
      expect(sent[1].error).toMatchObject({ message, code })
      expect(outcome.error).toMatchObject({ status: 502, code })
    })
  }
})
