import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createAnthropic } from '@ai-sdk/anthropic'
import { generateObject, jsonSchema } from 'ai'
import { FAKE_REPLY as ANTHROPIC_REPLY, FAKE_TOOL_RESULT_REPLY, startFakeAnthropic, type FakeAnthropic } from '../helpers/fake-anthropic.ts'
import { DEFAULT_REPLY as OPENAI_REPLY, TOOL_RESULT_REPLY as OPENAI_TOOL_REPLY, startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { aiSdkBasics, aiSdkParallelCalls, type AiSdkCase } from './ai-sdk-kit.ts'

/** Vercel's AI SDK with its Anthropic provider pointed at the gateway: translated to OpenAI, native to Anthropic. */
let openai: FakeOpenAI
let anthropic: FakeAnthropic
let gw: TestGateway
let provider: ReturnType<typeof createAnthropic>

beforeAll(async () => {
  ;[openai, anthropic] = await Promise.all([startFakeOpenAI(), startFakeAnthropic({ streamChunkBytes: 11 })])
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'oa', type: 'openai', base_url: openai.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'claude', type: 'anthropic', base_url: anthropic.url, api_key: 'sk-ant-test' })
  await gw.admin('POST', '/models', { name: 'gpt', targets: [{ provider: 'oa', model: 'gpt-4o' }] })
  await gw.admin('POST', '/models', { name: 'sonnet', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] })
  const key = (await gw.admin('POST', '/keys', { name: 'ai-sdk' })).key
  provider = createAnthropic({ baseURL: gw.baseURL, apiKey: key })
})

afterAll(async () => {
  await gw.close()
  openai.stop()
  anthropic.stop()
})

const cases: AiSdkCase[] = [
  { model: 'gpt', reply: OPENAI_REPLY, toolReply: OPENAI_TOOL_REPLY, usage: () => openai.usageLog.at(-1)! },
  { model: 'sonnet', reply: ANTHROPIC_REPLY, toolReply: FAKE_TOOL_RESULT_REPLY, usage: () => anthropic.usageLog.at(-1)! },
]

for (const c of cases) describe(`@ai-sdk/anthropic → ${c.model}`, () => aiSdkBasics(() => provider(c.model), c))

describe('@ai-sdk/anthropic → gpt: parallel tool calls', () => aiSdkParallelCalls(() => provider('gpt')))

describe('@ai-sdk/anthropic → gpt: structured output', () => {
  test('generateObject: output_config.format becomes chat response_format json_schema', async () => {
    const schema = { type: 'object', properties: { name: { type: 'string' }, age: { type: 'number' } }, required: ['name', 'age'], additionalProperties: false }
    const result = await generateObject({
      model: provider('gpt'),
      schema: jsonSchema<{ name: string; age: number }>(schema as any),
      prompt: 'A person',
      providerOptions: { anthropic: { structuredOutputMode: 'outputFormat' } },
      maxRetries: 0,
    })
    expect(typeof result.object.name).toBe('string')
    expect(typeof result.object.age).toBe('number')
    expect(openai.requests.at(-1)!.body.response_format).toEqual({ type: 'json_schema', json_schema: { name: 'output', schema } })
  })
})
