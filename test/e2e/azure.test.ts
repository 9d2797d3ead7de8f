import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { FAKE_API_KEY, FAKE_REPLY, FAKE_TOOL_INPUT, FAKE_TOOL_RESULT_REPLY, startFakeAzure, type FakeAzure } from '../helpers/fake-azure.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateEmbeddingResponse, validateSchema, validateSseBody } from '../helpers/openapi.ts'

/** The official OpenAI SDK through the gateway to Azure OpenAI: deployments, api-versions, Azure's quirks. */
let fake: FakeAzure
let asyncFake: FakeAzure
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
  // 7-byte network writes split events and multi-byte characters.
  fake = await startFakeAzure({ streamChunkBytes: 7 })
  asyncFake = await startFakeAzure({ asyncFilter: true })
  gw = await startGateway()
  const provider = (name: string, extra: Record<string, unknown> = {}) =>
    gw.admin('POST', '/providers', { name, type: 'azure', base_url: fake.url, api_key: FAKE_API_KEY, ...extra })
  await provider('azure')
  await provider('azure-v1', { base_url: `${fake.url}/openai/v1/`, options: { api_version: 'v1' } })
  await provider('azure-preview', { options: { api_version: '2025-04-01-preview' } })
  await provider('azure-2024-06', { options: { api_version: '2024-06-01' } })
  await provider('azure-async', { base_url: asyncFake.url })
  await provider('azure-bad-key', { api_key: 'not-the-key' })
  const model = (name: string, provider: string, deployment: string) => gw.admin('POST', '/models', { name, targets: [{ provider, model: deployment }] })
  await model('gpt', 'azure', 'gpt4o-prod')
  await model('gpt-v1', 'azure-v1', 'gpt4o-prod')
  await model('gpt-preview', 'azure-preview', 'gpt4o-prod')
  await model('gpt-2024-06', 'azure-2024-06', 'gpt4o-prod')
  await model('gpt-async', 'azure-async', 'gpt4o-prod')
  await model('gpt-missing', 'azure', 'no-such-deployment')
  await model('gpt-bad-key', 'azure-bad-key', 'gpt4o-prod')
  await model('embed', 'azure', 'embed-prod')
  await model('instruct', 'azure', 'instruct-prod')
  key = (await gw.admin('POST', '/keys', { name: 'sdk' })).key
  client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
})

afterAll(async () => {
  await gw.close()
  fake.stop()
  asyncFake.stop()
})

describe('azure adapter through the gateway', () => {
  test('chat: deployment URL, api-key, the api-version; an OpenAI body without Azure annotations; usage as reported', async () => {
    const { data, response } = await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'system', content: 'Be brief.' }, ...user('Hello')] }).withResponse()
    validateSchema('CreateChatCompletionResponse', data)
    expect(data.model).toBe('gpt')
    expect(data.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(data.choices[0]!.finish_reason).toBe('stop')
    expect(JSON.stringify(data)).not.toContain('filter_results')
    expect(usageOf(data.usage)).toEqual(fake.usageLog.at(-1)!)
    expect(response.headers.get('x-conduit-model')).toBe('gpt4o-prod')

    const upstream = fake.requests.at(-1)!
    expect(upstream.path).toBe('/openai/deployments/gpt4o-prod/chat/completions')
    expect(upstream.query).toEqual({ 'api-version': '2024-10-21' })
    expect(upstream.headers['api-key']).toBe(FAKE_API_KEY)
    expect(upstream.headers.authorization).toBeUndefined()
    expect(upstream.body).toEqual({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }] })
  })

  test('streaming: the opening prompt-verdict chunk is gone, chunks are spec-valid, usage as reported', async () => {
    const final = await client.chat.completions.stream({ model: 'gpt', messages: user('Hello') }).finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(final.model).toBe('gpt')
    // Asked for usage although the client did not: every Azure stream is parsed anyway.
    expect(fake.requests.at(-1)!.body.stream_options).toEqual({ include_usage: true })

    const res = await post('/chat/completions', { model: 'gpt', stream: true, stream_options: { include_usage: true }, messages: user('Hello') })
    const text = await res.text()
    expect(text).not.toContain('filter_results')
    const chunks = validateSseBody(text, 'CreateChatCompletionStreamResponse')
    expect(chunks.every((c) => c.model === 'gpt' && c.id.startsWith('chatcmpl-'))).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(FAKE_REPLY)
    expect(usageOf(chunks.at(-1)!.usage)).toEqual(fake.usageLog.at(-1)!)

    const plain = validateSseBody(await (await post('/chat/completions', { model: 'gpt', stream: true, messages: user('Hello') })).text(), 'CreateChatCompletionStreamResponse')
    expect(plain.some((c) => 'usage' in c)).toBe(false)
  })

  test('the asynchronous filter’s verdict-only chunks are dropped; a filtered completion ends with content_filter', async () => {
    const res = await post('/chat/completions', { model: 'gpt-async', stream: true, messages: user('Hello') })
    const chunks = validateSseBody(await res.text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(FAKE_REPLY)

    const filtered = validateSseBody(await (await post('/chat/completions', { model: 'gpt-async', stream: true, messages: user('filtered-output') })).text(), 'CreateChatCompletionStreamResponse')
    expect(filtered.flatMap((c) => c.choices.map((x: any) => x.finish_reason)).filter(Boolean)).toEqual(['content_filter'])
    const final = await client.chat.completions.stream({ model: 'gpt-async', messages: user('filtered-output') }).finalChatCompletion()
    expect(final.choices[0]!.finish_reason).toBe('content_filter')

    // Not streamed: the withheld completion comes without content; the client gets content null.
    const whole = await client.chat.completions.create({ model: 'gpt', messages: user('filtered-output') })
    validateSchema('CreateChatCompletionResponse', whole)
    expect(whole.choices[0]).toMatchObject({ finish_reason: 'content_filter', message: { content: null, refusal: null } })
  })

  test('tool call round trip, streamed and not', async () => {
    const ask = { model: 'gpt', tools, messages: user('What is the weather in Paris?') }
    const first = await client.chat.completions.create(ask)
    validateSchema('CreateChatCompletionResponse', first)
    expect(first.choices[0]!.finish_reason).toBe('tool_calls')
    const call = first.choices[0]!.message.tool_calls![0]! as any
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual(FAKE_TOOL_INPUT)
    expect(fake.requests.at(-1)!.body.tools).toEqual(tools)

    const streamed = await client.chat.completions.stream(ask).finalChatCompletion()
    expect(streamed.choices[0]!.finish_reason).toBe('tool_calls')
    expect(JSON.parse((streamed.choices[0]!.message.tool_calls![0] as any).function.arguments)).toEqual(FAKE_TOOL_INPUT)

    const answer = await client.chat.completions
      .stream({ ...ask, messages: [...ask.messages, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: '{"sky":"sunny"}' }] })
      .finalChatCompletion()
    expect(answer.choices[0]!.message.content).toBe(FAKE_TOOL_RESULT_REPLY)
    expect(fake.requests.at(-1)!.body.messages[2]).toEqual({ role: 'tool', tool_call_id: call.id, content: '{"sky":"sunny"}' })
  })

  test('images travel as OpenAI image_url parts', async () => {
    const image = { type: 'image_url' as const, image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' as const } }
    await client.chat.completions.create({ model: 'gpt', messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, image] }] })
    expect(fake.requests.at(-1)!.body.messages[0].content[1]).toEqual(image)
  })

  test('embeddings: float, and base64 (the SDK default) decoding to the same float32 values', async () => {
    const floats = await client.embeddings.create({ model: 'embed', input: ['hello', 'world'], encoding_format: 'float' })
    validateSchema('CreateEmbeddingResponse', floats)
    expect(floats.model).toBe('embed')
    expect(floats.usage.prompt_tokens).toBe(fake.usageLog.at(-1)!.prompt_tokens)
    expect(fake.requests.at(-1)!.path).toBe('/openai/deployments/embed-prod/embeddings')

    const decoded = await client.embeddings.create({ model: 'embed', input: ['hello', 'world'] })
    // Azure encodes base64 itself: the request goes through as the SDK sent it.
    expect(fake.requests.at(-1)!.body.encoding_format).toBe('base64')
    decoded.data.forEach((d, i) => d.embedding.forEach((v, j) => expect(v).toBe(Math.fround(floats.data[i]!.embedding[j]!))))
    const raw = (await (await post('/embeddings', { model: 'embed', input: 'hello', encoding_format: 'base64', dimensions: 8 })).json()) as any
    validateEmbeddingResponse(raw)
    expect(Buffer.from(raw.data[0].embedding, 'base64').length).toBe(8 * 4)
  })

  test('legacy completions, streamed and not, on their own deployment', async () => {
    const res = await client.completions.create({ model: 'instruct', prompt: 'Say hello' })
    validateSchema('CreateCompletionResponse', res)
    expect(res.choices[0]!.text).toBe(FAKE_REPLY)
    expect(JSON.stringify(res)).not.toContain('filter_results')
    expect(usageOf(res.usage)).toEqual(fake.usageLog.at(-1)!)
    expect(fake.requests.at(-1)!.path).toBe('/openai/deployments/instruct-prod/completions')

    const body = await (await post('/completions', { model: 'instruct', prompt: 'Say hello', stream: true, stream_options: { include_usage: true } })).text()
    expect(body.endsWith('data: [DONE]\n\n')).toBe(true)
    const chunks = body.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)))
    expect(chunks.every((c) => c.object === 'text_completion' && c.model === 'instruct' && c.id)).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.text ?? '').join('')).toBe(FAKE_REPLY)
    expect(usageOf(chunks.at(-1)!.usage)).toEqual(fake.usageLog.at(-1)!)
  })

  test('the v1 surface: /openai/v1 with the deployment as model and no api-version', async () => {
    const res = await client.chat.completions.create({ model: 'gpt-v1', messages: user('Hello'), store: true })
    expect(res.choices[0]!.message.content).toBe(FAKE_REPLY)
    const upstream = fake.requests.at(-1)!
    expect(upstream.path).toBe('/openai/v1/chat/completions')
    expect(upstream.query).toEqual({})
    expect(upstream.body).toMatchObject({ model: 'gpt4o-prod', store: true })
    const final = await client.chat.completions.stream({ model: 'gpt-v1', messages: user('Hello') }).finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(FAKE_REPLY)
  })

  test('api-versions: GA drops unknown fields and says so, preview passes them, 2024-06-01 gets max_tokens', async () => {
    const { response } = await client.chat.completions.create({ model: 'gpt', messages: user('Hello'), store: true, metadata: { team: 'a' } }).withResponse()
    expect(response.headers.get('x-conduit-dropped-params')?.split(',').sort()).toEqual(['metadata', 'store'])
    expect(fake.requests.at(-1)!.body.store).toBeUndefined()

    const preview = await client.chat.completions.create({ model: 'gpt-preview', messages: user('Hello'), store: true }).withResponse()
    expect(preview.response.headers.get('x-conduit-dropped-params')).toBeNull()
    expect(fake.requests.at(-1)!.query['api-version']).toBe('2025-04-01-preview')
    expect(fake.requests.at(-1)!.body.store).toBe(true)

    const old = await client.chat.completions.create({ model: 'gpt-2024-06', messages: user('finish-length'), max_completion_tokens: 2 })
    expect(old.choices[0]!.finish_reason).toBe('length')
    expect(fake.requests.at(-1)!.body).toMatchObject({ max_tokens: 2 })
    // No stream_options before 2024-09-01: the stream still works, its usage is estimated.
    const final = await client.chat.completions.stream({ model: 'gpt-2024-06', messages: user('Hello') }).finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(fake.requests.at(-1)!.body.stream_options).toBeUndefined()
  })

  test('finish-length honours max_tokens, streamed and not', async () => {
    const res = await client.chat.completions.create({ model: 'gpt', messages: user('finish-length'), max_tokens: 3 })
    expect(res.choices[0]!.finish_reason).toBe('length')
    expect(res.choices[0]!.message.content).toBe('Hello from fake')
    const chunks = validateSseBody(await (await post('/chat/completions', { model: 'gpt', stream: true, max_tokens: 3, messages: user('finish-length') })).text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Hello from fake')
  })

  test('errors: Azure envelopes become ours with status, code and retry hints', async () => {
    const filtered = await failure(client.chat.completions.create({ model: 'gpt', messages: user('content-filter please') }))
    expect(filtered).toBeInstanceOf(OpenAI.BadRequestError)
    expect(filtered.code).toBe('content_filter')
    expect(filtered.param).toBe('prompt')
    validateSchema('Error', filtered.error)

    const limited = await failure(client.chat.completions.create({ model: 'gpt', messages: user('fail-429') }))
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError)
    expect(limited.code).toBe('429')
    expect(limited.headers.get('retry-after')).toBe('6')
    expect(limited.headers.get('retry-after-ms')).toBe('6000')

    const missing = await failure(client.chat.completions.create({ model: 'gpt-missing', messages: user('Hello') }))
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError)
    expect(missing.code).toBe('DeploymentNotFound')

    expect(await failure(client.chat.completions.create({ model: 'gpt', messages: user('fail-400') }))).toMatchObject({ status: 400, code: null })
    expect(await failure(client.chat.completions.create({ model: 'gpt', messages: user('fail-500') }))).toBeInstanceOf(OpenAI.InternalServerError)
    const unavailable = await failure(client.chat.completions.create({ model: 'gpt', messages: user('fail-503') }))
    expect(unavailable).toMatchObject({ status: 503, code: 'ServiceUnavailable' })
    const streamed = await failure(client.chat.completions.stream({ model: 'gpt', messages: user('fail-429') }).finalChatCompletion())
    expect(streamed).toBeInstanceOf(OpenAI.RateLimitError)

    // Azure refusing the gateway's key: a gateway fault, the upstream's text withheld.
    const auth = await failure(client.chat.completions.create({ model: 'gpt-bad-key', messages: user('Hello') }))
    expect(auth.status).toBe(502)
    expect(auth.code).toBe('upstream_auth_failed')
    expect(auth.error.message).not.toContain('Access denied')
  })

  test('an error mid-stream reaches the SDK as an APIError, no [DONE], nothing logged as usage', async () => {
    const before = fake.usageLog.length
    const failed = await failure(client.chat.completions.stream({ model: 'gpt', messages: user('midstream-error') }).finalChatCompletion())
    expect(failed).toBeInstanceOf(OpenAI.APIError)
    expect(failed.message).toContain('The server had an error')
    const text = await (await post('/chat/completions', { model: 'gpt', stream: true, messages: user('midstream-error') })).text()
    expect(text).not.toContain('[DONE]')
    expect(text.trim().split('\n\n').at(-1)).toContain('"error"')
    expect(fake.usageLog.length).toBe(before)
  })
})
