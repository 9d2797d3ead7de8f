import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { FAKE_REPLY, FAKE_TOOL_INPUT, FAKE_TOOL_RESULT_REPLY, startFakeAnthropic, type FakeAnthropic } from '../helpers/fake-anthropic.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema, validateSseBody } from '../helpers/openapi.ts'

/** The same OpenAI SDK calls, answered by the Anthropic Messages API through the translating adapter. */
let fake: FakeAnthropic
let gw: TestGateway
let client: OpenAI
let key: string

const tools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Weather by city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]

beforeAll(async () => {
  fake = await startFakeAnthropic({ streamChunkBytes: 7 })
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'claude', type: 'anthropic', base_url: fake.url, api_key: 'sk-ant-test' })
  await gw.admin('POST', '/providers', { name: 'claude-bad-key', type: 'anthropic', base_url: fake.url, api_key: 'sk-ant-wrong' })
  await gw.admin('POST', '/models', { name: 'smart', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] })
  await gw.admin('POST', '/models', { name: 'misconfigured', targets: [{ provider: 'claude-bad-key', model: 'claude-sonnet-4-5' }] })
  key = (await gw.admin('POST', '/keys', { name: 'sdk' })).key
  client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
})

afterAll(async () => {
  await gw.close()
  fake.stop()
})

describe('anthropic adapter through the gateway', () => {
  test('chat: system prompt, translation both ways, usage, spec-valid', async () => {
    const res = await client.chat.completions.create({
      model: 'smart',
      max_tokens: 256,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
    })
    expect(res.model).toBe('smart')
    expect(res.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(res.choices[0]!.finish_reason).toBe('stop')
    expect(res.usage!.prompt_tokens).toBeGreaterThan(0)
    validateSchema('CreateChatCompletionResponse', res)

    const upstream = fake.requests.at(-1)!
    expect(upstream.path).toBe('/v1/messages')
    expect(upstream.headers['x-api-key']).toBe('sk-ant-test')
    expect(upstream.body).toMatchObject({ model: 'claude-sonnet-4-5', system: 'Be brief.', max_tokens: 256 })
    expect(upstream.body.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'Hello' }] }])
  })

  test('streaming with finalChatCompletion() and spec-valid chunks (upstream split mid-character)', async () => {
    const final = await client.chat.completions.stream({ model: 'smart', messages: [{ role: 'user', content: 'Hello' }] }).finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(FAKE_REPLY)

    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'smart', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Hello' }] }),
    })
    const chunks = validateSseBody(await res.text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(FAKE_REPLY)
    expect(chunks.at(-1)!.usage.completion_tokens).toBeGreaterThan(0)
    expect(chunks.every((c) => c.model === 'smart')).toBe(true)
  })

  test('tool call round trip, streamed and not', async () => {
    const ask = { model: 'smart', tools, messages: [{ role: 'user' as const, content: 'What is the weather in Paris?' }] }
    const first = await client.chat.completions.create(ask)
    expect(first.choices[0]!.finish_reason).toBe('tool_calls')
    const call = first.choices[0]!.message.tool_calls![0]! as any
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual(FAKE_TOOL_INPUT)
    validateSchema('CreateChatCompletionResponse', first)
    expect(fake.requests.at(-1)!.body.tools[0]).toMatchObject({ name: 'get_weather', input_schema: { type: 'object' } })

    const streamed = await client.chat.completions.stream(ask).finalChatCompletion()
    expect(JSON.parse((streamed.choices[0]!.message.tool_calls![0] as any).function.arguments)).toEqual(FAKE_TOOL_INPUT)
    expect(streamed.choices[0]!.finish_reason).toBe('tool_calls')

    const answer = await client.chat.completions.create({
      model: 'smart',
      tools,
      messages: [...ask.messages, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: '{"sky":"sunny"}' }],
    })
    expect(answer.choices[0]!.message.content).toBe(FAKE_TOOL_RESULT_REPLY)
    const sent = fake.requests.at(-1)!.body.messages
    expect(sent[1].content[0]).toMatchObject({ type: 'tool_use', id: call.id, name: 'get_weather', input: FAKE_TOOL_INPUT })
    expect(sent[2].content[0]).toMatchObject({ type: 'tool_result', tool_use_id: call.id })
  })

  test('images in messages become Anthropic image blocks', async () => {
    await client.chat.completions.create({
      model: 'smart',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }],
    })
    expect(fake.requests.at(-1)!.body.messages[0].content[1]).toEqual({ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } })
  })

  test('errors: Anthropic envelopes become ours with the right status', async () => {
    const overloaded = await client.chat.completions.create({ model: 'smart', messages: [{ role: 'user', content: 'overloaded' }] }).catch((e) => e)
    expect(overloaded).toBeInstanceOf(OpenAI.InternalServerError)
    expect(overloaded.status).toBe(503)
    const limited = await client.chat.completions.create({ model: 'smart', messages: [{ role: 'user', content: 'ratelimit' }] }).catch((e) => e)
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError)
    expect(limited.headers.get('retry-after')).toBe('3')
    // The provider refusing the gateway's own key is a gateway fault, reported without the upstream's text.
    const auth = await client.chat.completions.create({ model: 'misconfigured', messages: [{ role: 'user', content: 'hi' }] }).catch((e) => e)
    expect(auth.status).toBe(502)
    expect(auth.code).toBe('upstream_auth_failed')
    const n = await client.chat.completions.create({ model: 'smart', n: 2, messages: [{ role: 'user', content: 'hi' }] }).catch((e) => e)
    expect(n).toBeInstanceOf(OpenAI.BadRequestError)
    expect(n.param).toBe('n')
    const embeddings = await client.embeddings.create({ model: 'smart', input: 'x' }).catch((e) => e)
    expect(embeddings.status).toBe(400)
    expect(embeddings.code).toBe('unsupported_endpoint')
  })

  test('an error event mid-stream reaches the SDK as an APIError', async () => {
    const failed = await client.chat.completions
      .stream({ model: 'smart', messages: [{ role: 'user', content: 'midstream-error' }] })
      .finalChatCompletion()
      .catch((e) => e)
    expect(failed).toBeInstanceOf(OpenAI.APIError)
  })

  test('dropped parameters are signalled, never silent', async () => {
    const { response } = await client.chat.completions
      .create({ model: 'smart', seed: 7, logprobs: true, messages: [{ role: 'user', content: 'hi' }] })
      .withResponse()
    expect(response.headers.get('x-conduit-dropped-params')?.split(',').sort()).toEqual(['logprobs', 'seed'])
  })
})
