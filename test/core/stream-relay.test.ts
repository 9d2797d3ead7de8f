import { describe, expect, test } from 'bun:test'
import anthropic from '../../src/providers/anthropic/index.ts'
import { registeredAdapter } from '../helpers/adapter.ts'
import { CLIENT_MODEL, fixtureBytes, ignoreCreated, replayEverySplit } from '../helpers/relay.ts'

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
