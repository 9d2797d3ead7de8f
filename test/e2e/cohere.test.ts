import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { FAKE_API_KEY, FAKE_REPLY, FAKE_TOOL_INPUT, FAKE_TOOL_PLAN, FAKE_TOOL_RESULT_REPLY, startFakeCohere, type FakeCohere } from '../helpers/fake-cohere.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateEmbeddingResponse, validateSchema, validateSseBody } from '../helpers/openapi.ts'

/** The same OpenAI SDK calls, answered by Cohere's v2 API through the translating adapter. */
let fake: FakeCohere
let gw: TestGateway
let client: OpenAI
let key: string

const tools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Weather by city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
const user = (content: string) => [{ role: 'user' as const, content }]
const post = (path: string, body: unknown) =>
  fetch(`${gw.baseURL}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
const failure = (p: Promise<unknown>) => p.then(
  () => {
    throw new Error('expected the call to fail')
  },
  (e) => e,
)
const usageOf = (u: { prompt_tokens: number; completion_tokens: number } | null | undefined) => ({ prompt_tokens: u?.prompt_tokens, completion_tokens: u?.completion_tokens })

beforeAll(async () => {
  // 5-byte network writes split events and multi-byte characters.
  fake = await startFakeCohere({ streamChunkBytes: 5 })
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'cohere', type: 'cohere', base_url: fake.url, api_key: FAKE_API_KEY })
  await gw.admin('POST', '/providers', { name: 'cohere-query', type: 'cohere', base_url: fake.url, api_key: FAKE_API_KEY, options: { embed_input_type: 'search_query' } })
  await gw.admin('POST', '/providers', { name: 'cohere-bad-key', type: 'cohere', base_url: fake.url, api_key: 'not-the-key' })
  await gw.admin('POST', '/models', { name: 'command', targets: [{ provider: 'cohere', model: 'command-a-03-2025' }] })
  await gw.admin('POST', '/models', { name: 'ghost', targets: [{ provider: 'cohere', model: 'command-z' }] })
  await gw.admin('POST', '/models', { name: 'embed', targets: [{ provider: 'cohere', model: 'embed-v4.0' }] })
  await gw.admin('POST', '/models', { name: 'embed-query', targets: [{ provider: 'cohere-query', model: 'embed-v4.0' }] })
  await gw.admin('POST', '/models', { name: 'misconfigured', targets: [{ provider: 'cohere-bad-key', model: 'command-a-03-2025' }] })
  key = (await gw.admin('POST', '/keys', { name: 'sdk' })).key
  client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
})

afterAll(async () => {
  await gw.close()
  fake.stop()
})

describe('cohere adapter through the gateway', () => {
  test('chat: /v2/chat with Bearer auth, translated both ways, usage from Cohere’s token counts', async () => {
    const { data, response } = await client.chat.completions
      .create({ model: 'command', max_tokens: 256, temperature: 0.3, messages: [{ role: 'system', content: 'Be brief.' }, ...user('Hello')] })
      .withResponse()
    validateSchema('CreateChatCompletionResponse', data)
    expect(data.model).toBe('command')
    expect(data.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(data.choices[0]!.finish_reason).toBe('stop')
    expect(usageOf(data.usage)).toEqual(fake.usageLog.at(-1)!)
    expect(response.headers.get('x-conduit-model')).toBe('command-a-03-2025')

    const upstream = fake.requests.at(-1)!
    expect(upstream.path).toBe('/v2/chat')
    expect(upstream.headers.authorization).toBe(`Bearer ${FAKE_API_KEY}`)
    expect(upstream.body).toEqual({
      model: 'command-a-03-2025',
      messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }],
      max_tokens: 256,
      temperature: 0.3,
    })
  })

  test('streaming with finalChatCompletion() and spec-valid chunks (upstream split mid-character)', async () => {
    const final = await client.chat.completions.stream({ model: 'command', messages: user('Hello') }).finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(final.choices[0]!.finish_reason).toBe('stop')

    const res = await post('/chat/completions', { model: 'command', stream: true, stream_options: { include_usage: true }, messages: user('Hello') })
    const chunks = validateSseBody(await res.text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.every((c) => c.model === 'command')).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(FAKE_REPLY)
    expect(usageOf(chunks.at(-1)!.usage)).toEqual(fake.usageLog.at(-1)!)
    // Cohere reports usage unasked and refuses stream_options: it is not sent.
    expect(fake.requests.at(-1)!.body.stream_options).toBeUndefined()
    expect(fake.requests.at(-1)!.body.stream).toBe(true)
  })

  test('tool call round trip, streamed and not: the tool plan as content, Cohere’s tool messages upstream', async () => {
    const ask = { model: 'command', tools, messages: user('What is the weather in Paris?') }
    const first = await client.chat.completions.create(ask)
    validateSchema('CreateChatCompletionResponse', first)
    expect(first.choices[0]!.finish_reason).toBe('tool_calls')
    expect(first.choices[0]!.message.content).toBe(FAKE_TOOL_PLAN)
    const call = first.choices[0]!.message.tool_calls![0]! as any
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual(FAKE_TOOL_INPUT)
    expect(usageOf(first.usage)).toEqual(fake.usageLog.at(-1)!)
    expect(fake.requests.at(-1)!.body.tools).toEqual(tools)

    const streamed = await client.chat.completions.stream(ask).finalChatCompletion()
    expect(streamed.choices[0]!.finish_reason).toBe('tool_calls')
    expect(streamed.choices[0]!.message.content).toBe(FAKE_TOOL_PLAN)
    expect(JSON.parse((streamed.choices[0]!.message.tool_calls![0] as any).function.arguments)).toEqual(FAKE_TOOL_INPUT)

    const messages = [...ask.messages, { role: 'assistant' as const, content: FAKE_TOOL_PLAN, tool_calls: [call] }, { role: 'tool' as const, tool_call_id: call.id, content: '{"sky":"sunny"}' }]
    const answer = await client.chat.completions.create({ ...ask, messages })
    expect(answer.choices[0]!.message.content).toBe(FAKE_TOOL_RESULT_REPLY)
    const sent = fake.requests.at(-1)!.body.messages
    expect(sent[1]).toEqual({ role: 'assistant', tool_plan: FAKE_TOOL_PLAN, tool_calls: [{ id: call.id, type: 'function', function: call.function }] })
    expect(sent[2]).toEqual({ role: 'tool', tool_call_id: call.id, content: [{ type: 'text', text: '{"sky":"sunny"}' }] })
    const streamedAnswer = await client.chat.completions.stream({ ...ask, messages }).finalChatCompletion()
    expect(streamedAnswer.choices[0]!.message.content).toBe(FAKE_TOOL_RESULT_REPLY)
  })

  test('tool_choice: required and a named function map to REQUIRED (the named tool alone)', async () => {
    await client.chat.completions.create({ model: 'command', tools, tool_choice: 'required', messages: user('Hello') })
    expect(fake.requests.at(-1)!.body.tool_choice).toBe('REQUIRED')
    const both = [...tools, { type: 'function' as const, function: { name: 'now', parameters: { type: 'object', properties: {} } } }]
    await client.chat.completions.create({ model: 'command', tools: both, tool_choice: { type: 'function', function: { name: 'now' } }, messages: user('Hello') })
    expect(fake.requests.at(-1)!.body).toMatchObject({ tool_choice: 'REQUIRED', tools: [{ function: { name: 'now' } }] })
    expect(fake.requests.at(-1)!.body.tools).toHaveLength(1)
  })

  test('images become Cohere image_url content blocks', async () => {
    const res = await client.chat.completions.create({
      model: 'command',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }],
    })
    expect(res.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(fake.requests.at(-1)!.body.messages[0].content).toEqual([
      { type: 'text', text: 'What is this?' },
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
    ])
  })

  test('embeddings: /v2/embed with an input_type; float and base64 (encoded by the gateway) agree', async () => {
    const floats = await client.embeddings.create({ model: 'embed', input: ['hello', 'world'], encoding_format: 'float' })
    validateSchema('CreateEmbeddingResponse', floats)
    expect(floats.model).toBe('embed')
    expect(floats.data).toHaveLength(2)
    expect(floats.usage).toEqual({ prompt_tokens: fake.usageLog.at(-1)!.prompt_tokens, total_tokens: fake.usageLog.at(-1)!.prompt_tokens })
    expect(fake.requests.at(-1)!.body).toEqual({ model: 'embed-v4.0', texts: ['hello', 'world'], input_type: 'search_document', embedding_types: ['float'] })

    const decoded = await client.embeddings.create({ model: 'embed', input: ['hello', 'world'] })
    decoded.data.forEach((d, i) => d.embedding.forEach((v, j) => expect(v).toBe(Math.fround(floats.data[i]!.embedding[j]!))))
    const raw = (await (await post('/embeddings', { model: 'embed', input: 'hello', encoding_format: 'base64', dimensions: 256 })).json()) as any
    validateEmbeddingResponse(raw)
    expect(Buffer.from(raw.data[0].embedding, 'base64').length).toBe(256 * 4)
    expect(fake.requests.at(-1)!.body.output_dimension).toBe(256)

    await client.embeddings.create({ model: 'embed-query', input: 'find me' })
    expect(fake.requests.at(-1)!.body.input_type).toBe('search_query')
  })

  test('finish-length: MAX_TOKENS becomes length, streamed and not', async () => {
    const res = await client.chat.completions.create({ model: 'command', max_tokens: 3, messages: user('finish-length') })
    expect(res.choices[0]!.finish_reason).toBe('length')
    expect(res.choices[0]!.message.content).toBe('Hello from fake')
    const chunks = validateSseBody(await (await post('/chat/completions', { model: 'command', stream: true, max_tokens: 3, messages: user('finish-length') })).text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.flatMap((c) => c.choices.map((x: any) => x.finish_reason)).filter(Boolean)).toEqual(['length'])
  })

  test('errors: Cohere’s {message} bodies become our envelope with Cohere’s status', async () => {
    const cases: [string, number, new (...args: any[]) => Error][] = [
      ['fail-400', 400, OpenAI.BadRequestError],
      ['fail-429', 429, OpenAI.RateLimitError],
      ['fail-500', 500, OpenAI.InternalServerError],
      ['fail-503', 503, OpenAI.InternalServerError],
    ]
    for (const [trigger, status, type] of cases) {
      const err = await failure(client.chat.completions.create({ model: 'command', messages: user(trigger) }))
      expect(err).toBeInstanceOf(type)
      expect(err.status).toBe(status)
      validateSchema('Error', err.error)
      const streamed = await failure(client.chat.completions.stream({ model: 'command', messages: user(trigger) }).finalChatCompletion())
      expect(streamed.status).toBe(status)
    }
    const bad = await failure(client.chat.completions.create({ model: 'command', messages: user('fail-400') }))
    expect(bad.error.message).toBe('invalid request: scripted failure (fail-400).')
    const notFound = await failure(client.chat.completions.create({ model: 'ghost', messages: user('Hello') }))
    expect(notFound).toBeInstanceOf(OpenAI.NotFoundError)
    expect(notFound.error.message).toContain("model 'command-z' not found")

    const auth = await failure(client.chat.completions.create({ model: 'misconfigured', messages: user('Hello') }))
    expect(auth.status).toBe(502)
    expect(auth.code).toBe('upstream_auth_failed')
    const n = await failure(client.chat.completions.create({ model: 'command', n: 2, messages: user('Hello') }))
    expect(n).toBeInstanceOf(OpenAI.BadRequestError)
    expect(n.param).toBe('n')
    const completions = await failure(client.completions.create({ model: 'command', prompt: 'x' }))
    expect(completions.status).toBe(400)
    expect(completions.code).toBe('unsupported_endpoint')
  })

  test('a mid-stream ERROR reaches the SDK as an APIError; nothing logged as usage', async () => {
    const before = fake.usageLog.length
    const failed = await failure(client.chat.completions.stream({ model: 'command', messages: user('midstream-error') }).finalChatCompletion())
    expect(failed).toBeInstanceOf(OpenAI.APIError)
    expect(failed.message).toContain('internal server error')
    const text = await (await post('/chat/completions', { model: 'command', stream: true, messages: user('midstream-error') })).text()
    expect(text).not.toContain('[DONE]')
    expect(text).toContain('upstream_generation_error')
    expect(fake.usageLog.length).toBe(before)
  })

  test('dropped parameters are signalled, never silent; Cohere never sees them', async () => {
    const { response } = await client.chat.completions
      .create({ model: 'command', logprobs: true, user: 'u-1', parallel_tool_calls: false, tools, messages: user('Hello') })
      .withResponse()
    expect(response.headers.get('x-conduit-dropped-params')?.split(',').sort()).toEqual(['logprobs', 'parallel_tool_calls', 'user'])
    const body = fake.requests.at(-1)!.body
    for (const name of ['logprobs', 'user', 'parallel_tool_calls']) expect(name in body).toBe(false)
  })
})
