import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createOpenAI } from '@ai-sdk/openai'
import { generateObject, generateText, jsonSchema } from 'ai'
import { FAKE_REPLY as ANTHROPIC_REPLY, FAKE_TOOL_RESULT_REPLY as ANTHROPIC_TOOL_REPLY, startFakeAnthropic, type FakeAnthropic } from '../helpers/fake-anthropic.ts'
import { FAKE_API_KEY as GEMINI_KEY, FAKE_REPLY as GEMINI_REPLY, FAKE_TOOL_RESULT_REPLY as GEMINI_TOOL_REPLY, startFakeGemini, type FakeGemini } from '../helpers/fake-gemini.ts'
import { DEFAULT_REPLY as OPENAI_REPLY, TOOL_RESULT_REPLY as OPENAI_TOOL_REPLY, startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { aiSdkBasics, aiSdkParallelCalls, type AiSdkCase } from './ai-sdk-kit.ts'

/** Vercel's AI SDK with its OpenAI provider on its default (Responses API) path, pointed at the gateway. */
let openai: FakeOpenAI
let anthropic: FakeAnthropic
let gemini: FakeGemini
let gw: TestGateway
let provider: ReturnType<typeof createOpenAI>

beforeAll(async () => {
  ;[openai, anthropic, gemini] = await Promise.all([startFakeOpenAI(), startFakeAnthropic({ streamChunkBytes: 11 }), startFakeGemini({ streamChunkBytes: 5 })])
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'oa', type: 'openai', base_url: openai.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'claude', type: 'anthropic', base_url: anthropic.url, api_key: 'sk-ant-test' })
  await gw.admin('POST', '/providers', { name: 'google', type: 'gemini', base_url: gemini.url, api_key: GEMINI_KEY })
  await gw.admin('POST', '/models', { name: 'gpt', targets: [{ provider: 'oa', model: 'gpt-4o' }] })
  await gw.admin('POST', '/models', { name: 'sonnet', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] })
  await gw.admin('POST', '/models', { name: 'flash', targets: [{ provider: 'google', model: 'gemini-2.5-flash' }] })
  // A chat-only server: the Responses door translates its chat stream.
  await gw.admin('POST', '/providers', { name: 'compat', type: 'openai-compatible', base_url: openai.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'compat', targets: [{ provider: 'compat', model: 'gpt-4o' }] })
  const key = (await gw.admin('POST', '/keys', { name: 'ai-sdk' })).key
  provider = createOpenAI({ baseURL: gw.baseURL, apiKey: key })
})

afterAll(async () => {
  await gw.close()
  await openai.stop()
  anthropic.stop()
  gemini.stop()
})

/** Per model: its fake's replies, its last usage, and the turns (role, text) its last request carried. */
const cases: (AiSdkCase & { turns(): string[][] })[] = [
  {
    model: 'gpt',
    reply: OPENAI_REPLY,
    toolReply: OPENAI_TOOL_REPLY,
    usage: () => openai.usageLog.at(-1)!,
    turns: () => openai.requests.at(-1)!.body.input.map((item: any) => [item.role, item.content[0].text]),
  },
  {
    model: 'sonnet',
    reply: ANTHROPIC_REPLY,
    toolReply: ANTHROPIC_TOOL_REPLY,
    usage: () => anthropic.usageLog.at(-1)!,
    turns: () => anthropic.requests.at(-1)!.body.messages.map((m: any) => [m.role, m.content[0].text]),
  },
  {
    model: 'flash',
    reply: GEMINI_REPLY,
    toolReply: GEMINI_TOOL_REPLY,
    usage: () => gemini.usageLog.at(-1)!,
    turns: () => gemini.requests.at(-1)!.body.contents.map((c: any) => [c.role === 'model' ? 'assistant' : c.role, c.parts[0].text]),
  },
]

for (const c of cases) {
  describe(`@ai-sdk/openai (Responses) → ${c.model}`, () => {
    aiSdkBasics(() => provider(c.model), c)

    test('a second turn: the earlier answer comes back as an item reference, resolved from the gateway store', async () => {
      const first = await generateText({ model: provider(c.model), prompt: 'Hello', maxRetries: 0 })
      const second = await generateText({ model: provider(c.model), messages: [{ role: 'user', content: 'Hello' }, ...first.response.messages, { role: 'user', content: 'And again?' }], maxRetries: 0 })
      expect(second.text).toBe(c.reply)
      expect(c.turns()).toEqual([
        ['user', 'Hello'],
        ['assistant', c.reply],
        ['user', 'And again?'],
      ])
    })
  })
}

describe('@ai-sdk/openai (Responses) → a chat-only server', () => aiSdkParallelCalls(() => provider('compat')))

describe('structured output', () => {
  const schema = { type: 'object', properties: { name: { type: 'string' }, age: { type: 'number' } }, required: ['name', 'age'], additionalProperties: false }

  test('generateObject natively: text.format json_schema relayed, the object parsed', async () => {
    const result = await generateObject({ model: provider('gpt'), schema: jsonSchema<{ name: string; age: number }>(schema as any), prompt: 'A person', maxRetries: 0 })
    expect(result.object).toEqual({ name: 'Paris', age: 21 })
    expect(openai.requests.at(-1)!.body.text.format).toMatchObject({ type: 'json_schema', schema })
  })

  test('generateObject translated: the schema reaches Gemini as responseJsonSchema', async () => {
    await generateObject({ model: provider('flash'), schema: jsonSchema<{ name: string; age: number }>(schema as any), prompt: 'A person', maxRetries: 0 }).catch(() => null)
    const config = gemini.requests.at(-1)!.body.generationConfig
    expect(config.responseMimeType).toBe('application/json')
    expect(config.responseJsonSchema).toEqual(schema)
  })
})
