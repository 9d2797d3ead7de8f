import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createAnthropic } from '@ai-sdk/anthropic'
import { generateObject, generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai'
import { FAKE_REPLY as ANTHROPIC_REPLY, FAKE_TOOL_RESULT_REPLY, startFakeAnthropic, type FakeAnthropic } from '../helpers/fake-anthropic.ts'
import { DEFAULT_REPLY as OPENAI_REPLY, startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

/** Vercel's AI SDK with its Anthropic provider pointed at the gateway: translated to OpenAI, native to Anthropic. */
// The provider warns that it does not know the gateway's model names (a 4096 max_tokens default): expected here.
;(globalThis as any).AI_SDK_LOG_WARNINGS = false
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

const weather = tool({
  description: 'Weather by city',
  inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
  execute: async ({ city }) => ({ city, sky: 'sunny' }),
})

const cases = [
  { model: 'gpt', reply: OPENAI_REPLY, usage: () => openai.usageLog.at(-1)! },
  { model: 'sonnet', reply: ANTHROPIC_REPLY, usage: () => anthropic.usageLog.at(-1)! },
]

for (const { model, reply, usage } of cases) {
  describe(`@ai-sdk/anthropic → ${model}`, () => {
    test('generateText', async () => {
      const result = await generateText({ model: provider(model), system: 'Be brief.', prompt: 'Hello', maxRetries: 0 })
      expect(result.text).toBe(reply)
      expect(result.finishReason).toBe('stop')
      expect(result.usage.outputTokens).toBe(usage().completion_tokens)
      expect(result.usage.inputTokens).toBe(usage().prompt_tokens)
    })

    test('streamText', async () => {
      const result = streamText({ model: provider(model), prompt: 'Hello', maxRetries: 0 })
      let text = ''
      for await (const delta of result.textStream) text += delta
      expect(text).toBe(reply)
      expect(await result.finishReason).toBe('stop')
      expect((await result.usage).outputTokens).toBe(usage().completion_tokens)
    })

    test('a tool call, executed and answered', async () => {
      const result = await generateText({ model: provider(model), tools: { get_weather: weather }, stopWhen: stepCountIs(2), prompt: 'What is the weather in Paris?', maxRetries: 0 })
      expect(result.steps[0]!.toolCalls).toMatchObject([{ toolName: 'get_weather', input: { city: 'Paris' } }])
      expect(result.steps[0]!.finishReason).toBe('tool-calls')
      expect(result.text).toBe(FAKE_TOOL_RESULT_REPLY)
    })

    test('streamText with a tool', async () => {
      const result = streamText({ model: provider(model), tools: { get_weather: weather }, stopWhen: stepCountIs(2), prompt: 'What is the weather in Paris?', maxRetries: 0 })
      expect(await result.text).toBe(FAKE_TOOL_RESULT_REPLY)
      expect((await result.steps)[0]!.toolCalls).toMatchObject([{ toolName: 'get_weather', input: { city: 'Paris' } }])
    })
  })
}

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
