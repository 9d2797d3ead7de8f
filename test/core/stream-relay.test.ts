import { describe, expect, test } from 'bun:test'
import path from 'node:path'
import { Attempt, RequestCtx } from '../../src/core/context.ts'
import { relayStream, type StreamOutcome } from '../../src/core/stream-relay.ts'
import { UpstreamCall } from '../../src/core/upstream.ts'
import { PluginHost } from '../../src/plugin-host/host.ts'
import anthropic from '../../src/providers/anthropic/index.ts'
import type { ProviderAdapter } from '../../src/plugin-sdk/types.ts'
import { createLogger } from '../../src/services/logger.ts'
import { validateSseBody } from '../helpers/openapi.ts'

/**
 * The real relay (the code between upstream bytes and the client) fed recorded streams split at every byte
 * offset: the client must receive the same bytes whatever the network did to multi-byte characters.
 */
const log = createLogger('silent')
const host = new PluginHost({ log, store: { findKeyByHash: async () => null, spentMicros: async () => 0, onChange: () => () => {} }, builtins: {}, baseDir: '.' })
const fixture = (name: string) => Bun.file(path.join(import.meta.dir, '../fixtures', name)).bytes()

let anthropicAdapter: ProviderAdapter
await anthropic.setup({ registerProvider: (a: ProviderAdapter) => (anthropicAdapter = a) } as any)

async function relay(parts: Uint8Array[], options: { translate?: boolean; includeUsage: boolean }) {
  const ctx = new RequestCtx('chat', new Request('http://gateway.test/v1/chat/completions'), log)
  ctx.body = { model: 'my-model', messages: [{ role: 'user', content: 'hi' }] }
  const provider = { id: 'p', name: 'p', type: 'x', baseURL: null, apiKey: null, options: {} }
  const attempt = new Attempt(ctx, { provider, model: 'upstream-model', price: null }, 1)
  const [first, ...rest] = parts
  const upstream = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const part of rest) controller.enqueue(part)
      controller.close()
    },
  })
  let outcome: StreamOutcome | null = null
  const body = relayStream({
    call: new UpstreamCall(new AbortController().signal, 'p'),
    reader: upstream.getReader() as ReadableStreamDefaultReader<Uint8Array>,
    first: first!,
    idleMs: 5_000,
    attempt,
    parser: options.translate ? anthropicAdapter.chat!.createStreamParser!(attempt) : null,
    host,
    virtualModel: 'my-model',
    includeUsage: options.includeUsage,
    onFinish: (o) => (outcome = o),
  })
  const text = await new Response(body).text()
  return { text, outcome: outcome! as StreamOutcome }
}

/** Deterministic per-run fields (ids, created) differ between parses of translated streams; compare content. */
const normalise = (text: string) => text.replace(/"created":\d+/g, '"created":0')

async function replayEverySplit(file: string, options: { translate?: boolean; includeUsage: boolean }) {
  const bytes = await fixture(file)
  const whole = await relay([bytes], options)
  expect(whole.outcome.error).toBeNull()
  validateSseBody(whole.text, 'CreateChatCompletionStreamResponse')
  for (let offset = 1; offset < bytes.length; offset++) {
    const split = await relay([bytes.subarray(0, offset), bytes.subarray(offset)], options)
    if (normalise(split.text) !== normalise(whole.text)) {
      throw new Error(`split at byte ${offset} changed the output`)
    }
    expect(split.outcome.usage).toEqual(whole.outcome.usage)
  }
  return whole
}

describe('relay split at every byte offset', () => {
  test('OpenAI passthrough: bytes forwarded unchanged except the model name', async () => {
    const original = new TextDecoder().decode(await fixture('openai-chat-stream.sse'))
    const { text, outcome } = await replayEverySplit('openai-chat-stream.sse', { includeUsage: true })
    expect(text).toBe(original.replaceAll('"model":"gpt-4o-2024-08-06"', '"model":"my-model"'))
    expect(outcome.usage!.total_tokens).toBeGreaterThan(0)
  })

  test('OpenAI passthrough without include_usage: usage chunk and usage:null fields removed, usage still counted', async () => {
    const { text, outcome } = await replayEverySplit('openai-chat-stream.sse', { includeUsage: false })
    expect(text).not.toContain('"usage"')
    expect(text).not.toContain('"choices":[]')
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
    expect(outcome.usage!.total_tokens).toBeGreaterThan(0)
  })

  test('OpenAI tool-call stream', async () => {
    const { text } = await replayEverySplit('openai-tool-stream.sse', { includeUsage: true })
    expect(text).toContain('"finish_reason":"tool_calls"')
  })

  test('Anthropic translation: same chunks whatever the split', async () => {
    const { text, outcome } = await replayEverySplit('anthropic-stream.sse', { translate: true, includeUsage: true })
    const chunks = validateSseBody(text, 'CreateChatCompletionStreamResponse')
    expect(chunks.every((c) => c.model === 'my-model')).toBe(true)
    expect(outcome.usage!.completion_tokens).toBeGreaterThan(0)
  }, 30_000)
})
