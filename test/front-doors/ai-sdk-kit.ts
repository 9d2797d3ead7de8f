import { expect, test } from 'bun:test'
import { generateText, jsonSchema, stepCountIs, streamText, tool, type LanguageModel } from 'ai'

/** What the Vercel AI SDK does with any model through either front door; each file adds what is its protocol's own. */

// The providers warn about model names they do not know (the gateway's virtual names): expected here.
;(globalThis as any).AI_SDK_LOG_WARNINGS = false

export const weather = tool({
  description: 'Weather by city',
  inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false }),
  execute: async ({ city }) => ({ city, sky: 'sunny' }),
})

export interface AiSdkCase {
  /** The virtual model name. */
  model: string
  /** Its fake's plain reply and its reply once the tool's result is back. */
  reply: string
  toolReply: string
  /** The usage the fake reported for its last generation. */
  usage(): { prompt_tokens: number; completion_tokens: number }
}

/** generateText, streamText, and a tool call executed and answered (plain and streamed), with usage as the fake reported it. */
export function aiSdkBasics(model: () => LanguageModel, c: AiSdkCase) {
  test('generateText', async () => {
    const result = await generateText({ model: model(), system: 'Be brief.', prompt: 'Hello', maxRetries: 0 })
    expect(result.text).toBe(c.reply)
    expect(result.finishReason).toBe('stop')
    expect(result.usage.inputTokens).toBe(c.usage().prompt_tokens)
    expect(result.usage.outputTokens).toBe(c.usage().completion_tokens)
    expect(result.response.modelId).toBe(c.model)
  })

  test('streamText', async () => {
    const result = streamText({ model: model(), prompt: 'Hello', maxRetries: 0 })
    let text = ''
    for await (const delta of result.textStream) text += delta
    expect(text).toBe(c.reply)
    expect(await result.finishReason).toBe('stop')
    expect((await result.usage).outputTokens).toBe(c.usage().completion_tokens)
  })

  test('a tool call, executed and answered', async () => {
    const result = await generateText({ model: model(), tools: { get_weather: weather }, stopWhen: stepCountIs(2), prompt: 'What is the weather in Paris?', maxRetries: 0 })
    expect(result.steps[0]!.toolCalls).toMatchObject([{ toolName: 'get_weather', input: { city: 'Paris' } }])
    expect(result.steps[0]!.finishReason).toBe('tool-calls')
    expect(result.text).toBe(c.toolReply)
  })

  test('streamText with a tool', async () => {
    const result = streamText({ model: model(), tools: { get_weather: weather }, stopWhen: stepCountIs(2), prompt: 'What is the weather in Paris?', maxRetries: 0 })
    expect(await result.text).toBe(c.toolReply)
    expect((await result.steps)[0]!.toolCalls).toMatchObject([{ toolName: 'get_weather', input: { city: 'Paris' } }])
  })
}

/**
 * Two parallel tool calls from a chat upstream (the OpenAI fake's "two cities"), streamed one after the other as
 * OpenAI does and with their argument fragments interleaved (chat's `index` allows it): each call keeps its own.
 */
export function aiSdkParallelCalls(model: () => LanguageModel) {
  for (const interleaved of [false, true]) {
    test(`two parallel tool calls streamed ${interleaved ? 'interleaved' : 'one after the other'}: each call keeps its own arguments`, async () => {
      const prompt = `What is the weather in two cities${interleaved ? ', interleaved' : ''}?`
      const result = streamText({ model: model(), tools: { get_weather: weather }, prompt, maxRetries: 0 })
      const calls = (await result.steps)[0]!.toolCalls
      expect(calls.map((call) => call.input)).toEqual([{ city: 'Paris' }, { city: 'Rome' }])
    })
  }
}
