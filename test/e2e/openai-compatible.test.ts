import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateEmbeddingResponse, validateSchema, validateSseBody } from '../helpers/openapi.ts'

/** The official `openai` SDK drives the gateway in front of a faithful OpenAI-compatible fake. */
let fake: FakeOpenAI
let compat: FakeOpenAI
let gw: TestGateway
let client: OpenAI
let key: string

const chatBody = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'my-gpt4', messages: [{ role: 'user', content }], ...extra })
const post = (path: string, body: unknown, apiKey = key) =>
  fetch(`${gw.baseURL}${path}`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })

beforeAll(async () => {
  fake = await startFakeOpenAI()
  compat = await startFakeOpenAI({ base64Embeddings: false })
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'fake-openai', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'plain-compat', type: 'openai-compatible', base_url: compat.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'my-gpt4', targets: [{ provider: 'fake-openai', model: 'gpt-4o' }] })
  await gw.admin('POST', '/models', { name: 'my-embed', targets: [{ provider: 'fake-openai', model: 'text-embedding-3-small' }] })
  await gw.admin('POST', '/models', { name: 'compat-embed', targets: [{ provider: 'plain-compat', model: 'nomic-embed' }] })
  await gw.admin('POST', '/models', { name: 'my-instruct', targets: [{ provider: 'fake-openai', model: 'gpt-3.5-turbo-instruct' }] })
  key = (await gw.admin('POST', '/keys', { name: 'sdk' })).key
  client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
})

afterAll(async () => {
  await gw.close()
  fake.stop()
  compat.stop()
})

describe('chat completions', () => {
  test('non-streaming: virtual model name, upstream model and credentials, spec-valid body', async () => {
    const { data, response } = await client.chat.completions.create(chatBody('Hi there') as any).withResponse()
    expect(data.model).toBe('my-gpt4')
    expect(data.choices[0]!.message.content).toBe('Hello from fake OpenAI! 你好，世界 🌍✨')
    expect(data.usage!.total_tokens).toBe(data.usage!.prompt_tokens + data.usage!.completion_tokens)
    expect(response.headers.get('x-conduit-provider')).toBe('fake-openai')
    expect(response.headers.get('x-conduit-model')).toBe('gpt-4o')
    validateSchema('CreateChatCompletionResponse', data)

    const upstream = fake.requests.at(-1)!
    expect(upstream.body.model).toBe('gpt-4o')
    // The client's key never travels upstream; the provider's does.
    expect(upstream.headers.authorization).toBe('Bearer sk-upstream-test')
    expect(JSON.stringify(upstream.headers)).not.toContain(key)
  })

  test('a streamed answer comes over the gateway’s own connection (identity coding), a whole one through fetch', async () => {
    await client.chat.completions.create(chatBody('Hi') as any)
    expect(fake.requests.at(-1)!.headers['accept-encoding']).toBe('gzip, deflate, br, zstd')
    await client.chat.completions.stream(chatBody('Hi') as any).finalChatCompletion()
    const streamed = fake.requests.at(-1)!
    expect(streamed.body.stream).toBe(true)
    expect(streamed.headers['accept-encoding']).toBe('identity')
    expect(streamed.headers['user-agent']).toBe(`Bun/${Bun.version}`)
    expect(streamed.headers.authorization).toBe('Bearer sk-upstream-test')
  })

  test('streaming with finalChatCompletion(), every chunk spec-valid, no usage chunk unless asked', async () => {
    const stream = client.chat.completions.stream(chatBody('Hi') as any)
    const final = await stream.finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe('Hello from fake OpenAI! 你好，世界 🌍✨')
    expect(final.model).toBe('my-gpt4')

    const res = await post('/chat/completions', chatBody('Hi', { stream: true }))
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const chunks = validateSseBody(await res.text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.every((c) => c.model === 'my-gpt4')).toBe(true)
    expect(chunks.some((c) => c.choices.length === 0)).toBe(false)
    // The gateway asked the upstream for usage anyway, for accounting.
    expect(fake.requests.at(-1)!.body.stream_options).toEqual({ include_usage: true })
  })

  test('stream_options.include_usage delivers the final usage chunk', async () => {
    const res = await post('/chat/completions', chatBody('Hi', { stream: true, stream_options: { include_usage: true } }))
    const chunks = validateSseBody(await res.text(), 'CreateChatCompletionStreamResponse')
    const last = chunks.at(-1)!
    expect(last.choices).toEqual([])
    expect(last.usage.total_tokens).toBeGreaterThan(0)
  })

  test('a provider that puts usage on its finish chunk (Mistral): the client that asked gets it alone, last, as from OpenAI', async () => {
    const mistral = await startFakeOpenAI({ usageOnFinishChunk: true })
    const removed: string[] = []
    try {
      const provider = await gw.admin('POST', '/providers', { name: 'mistral', type: 'mistral', base_url: mistral.url, api_key: 'sk-upstream-test' })
      const model = await gw.admin('POST', '/models', { name: 'my-mistral', targets: [{ provider: 'mistral', model: 'mistral-small-latest' }] })
      removed.push(`/models/${model.id}`, `/providers/${provider.id}`)
      const ask = async (extra: Record<string, unknown>) => {
        const res = await post('/chat/completions', { ...chatBody('Hi', { stream: true, ...extra }), model: 'my-mistral' })
        return validateSseBody(await res.text(), 'CreateChatCompletionStreamResponse')
      }
      const asked = await ask({ stream_options: { include_usage: true } })
      expect(mistral.requests.at(-1)!.body.stream_options).toBeUndefined()
      const withUsage = asked.filter((c) => c.usage)
      expect(withUsage.length).toBe(1)
      expect(withUsage[0]).toBe(asked.at(-1))
      expect(asked.at(-1)!.choices).toEqual([])
      expect(asked.at(-1)!.usage).toMatchObject(mistral.usageLog.at(-1)!)
      expect(asked.at(-2)!.choices[0].finish_reason).toBe('stop')
      // Not asked: no usage anywhere, as OpenAI streams without include_usage.
      expect((await ask({})).some((c) => c.usage)).toBe(false)
      // The SDK's own accumulation sees it.
      const final = await client.chat.completions.stream({ model: 'my-mistral', messages: [{ role: 'user', content: 'Hi' }], stream_options: { include_usage: true } }).finalChatCompletion()
      expect(final.usage?.total_tokens).toBe(mistral.usageLog.at(-1)!.prompt_tokens + mistral.usageLog.at(-1)!.completion_tokens)
    } finally {
      for (const path of removed) await gw.admin('DELETE', path)
      mistral.stop()
    }
  })

  test('tool calls: non-streaming and streamed deltas, then the tool result round trip', async () => {
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
    const first = await client.chat.completions.create({ model: 'my-gpt4', messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools })
    const call = first.choices[0]!.message.tool_calls![0]! as any
    expect(first.choices[0]!.finish_reason).toBe('tool_calls')
    expect(JSON.parse(call.function.arguments)).toEqual({ city: 'Paris' })
    validateSchema('CreateChatCompletionResponse', first)

    const streamed = await client.chat.completions
      .stream({ model: 'my-gpt4', messages: [{ role: 'user', content: 'What is the weather in Paris?' }], tools })
      .finalChatCompletion()
    const streamedCall = streamed.choices[0]!.message.tool_calls![0]! as any
    expect(JSON.parse(streamedCall.function.arguments)).toEqual({ city: 'Paris' })

    const answer = await client.chat.completions.create({
      model: 'my-gpt4',
      tools,
      messages: [
        { role: 'user', content: 'What is the weather in Paris?' },
        { role: 'assistant', content: null, tool_calls: [call] },
        { role: 'tool', tool_call_id: call.id, content: '{"sky":"sunny"}' },
      ],
    })
    expect(answer.choices[0]!.message.content).toBe('The weather in Paris is sunny.')
  })

  test('n choices and images in messages pass through', async () => {
    const res = await client.chat.completions.create({
      model: 'my-gpt4',
      n: 2,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }] }],
    })
    expect(res.choices.map((c) => c.index)).toEqual([0, 1])
    expect(fake.requests.at(-1)!.body.messages[0].content[1].image_url.url).toBe('data:image/png;base64,iVBORw0KGgo=')
    validateSchema('CreateChatCompletionResponse', res)
  })

  test('unknown request fields reach the upstream untouched', async () => {
    await post('/chat/completions', chatBody('Hi', { reasoning_effort: 'low', metadata: { team: 'a' }, some_future_field: [1, 2] }))
    const body = fake.requests.at(-1)!.body
    expect(body.reasoning_effort).toBe('low')
    expect(body.some_future_field).toEqual([1, 2])
  })

  test('the body goes on as the client wrote it: only the mapped model and the usage request change', async () => {
    const raw = (text: string) => fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: text })
    // A seed past 2^53 and a float with more digits than a double holds would come out of a parse rounded.
    const text = '{ "seed": 12345678901234567890, "temperature": 0.70000000000000000001,\n  "model": "my-gpt4", "messages": [{"role": "user", "content": "caf\\u00e9"}] }'
    expect((await raw(text)).status).toBe(200)
    expect(fake.requests.at(-1)!.text).toBe(text.replace('"my-gpt4"', '"gpt-4o"'))
    const streamed = text.replace('"seed"', '"stream": true, "seed"')
    await (await raw(streamed)).text()
    expect(fake.requests.at(-1)!.text).toBe(streamed.replace('"my-gpt4"', '"gpt-4o"').replace(/}$/, ',"stream_options":{"include_usage":true}}'))
    // A second "model" (a nested key) leaves no single place to change: the body is serialized again, correctly.
    expect((await raw('{"model":"my-gpt4","metadata":{"model":"mine"},"messages":[{"role":"user","content":"hi"}]}')).status).toBe(200)
    expect(fake.requests.at(-1)!.text).toBe('{"model":"gpt-4o","metadata":{"model":"mine"},"messages":[{"role":"user","content":"hi"}]}')
  })
})

describe('embeddings', () => {
  test('float and base64 (the SDK default) from an upstream that speaks both', async () => {
    const floats = await client.embeddings.create({ model: 'my-embed', input: 'hello', encoding_format: 'float' })
    const decoded = await client.embeddings.create({ model: 'my-embed', input: 'hello' })
    expect(floats.model).toBe('my-embed')
    expect(decoded.data[0]!.embedding.length).toBe(floats.data[0]!.embedding.length)
    decoded.data[0]!.embedding.forEach((v, i) => expect(v).toBeCloseTo(floats.data[0]!.embedding[i]!, 5))
    validateSchema('CreateEmbeddingResponse', floats)

    const raw = (await (await post('/embeddings', { model: 'my-embed', input: ['a', 'b'], encoding_format: 'base64' })).json()) as any
    expect(typeof raw.data[0].embedding).toBe('string')
    validateEmbeddingResponse(raw)
  })

  test('base64 produced by the gateway when the upstream only returns floats', async () => {
    const floats = await client.embeddings.create({ model: 'compat-embed', input: 'hello', encoding_format: 'float' })
    const decoded = await client.embeddings.create({ model: 'compat-embed', input: 'hello' })
    expect(compat.requests.at(-1)!.body.encoding_format).toBe('float')
    decoded.data[0]!.embedding.forEach((v, i) => expect(v).toBeCloseTo(floats.data[0]!.embedding[i]!, 5))
    const raw = (await (await post('/embeddings', { model: 'compat-embed', input: 'x', encoding_format: 'base64' })).json()) as any
    expect(typeof raw.data[0].embedding).toBe('string')
    validateEmbeddingResponse(raw)
  })
})

describe('completions and models', () => {
  test('legacy completions, streaming and not', async () => {
    const res = await client.completions.create({ model: 'my-instruct', prompt: 'Say hi' })
    expect(res.model).toBe('my-instruct')
    validateSchema('CreateCompletionResponse', res)
    const stream = await client.completions.create({ model: 'my-instruct', prompt: 'Say hi', stream: true })
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.text ?? ''
    expect(text).toBe(res.choices[0]!.text)
  })

  test('models: list and retrieve show only what the key may use', async () => {
    const all = await client.models.list()
    expect(all.data.map((m) => m.id).sort()).toEqual(['compat-embed', 'my-embed', 'my-gpt4', 'my-instruct'])
    validateSchema('ListModelsResponse', { object: 'list', data: all.data })
    const one = await client.models.retrieve('my-gpt4')
    // The provider's type: its name ('fake-openai') is the operator's, which a key's holder is not told.
    expect(one).toMatchObject({ id: 'my-gpt4', object: 'model', owned_by: 'openai' })
    validateSchema('Model', one)

    const limited = (await gw.admin('POST', '/keys', { name: 'limited', allowed_models: ['my-*4'] })).key
    const limitedClient = new OpenAI({ apiKey: limited, baseURL: gw.baseURL, maxRetries: 0 })
    expect((await limitedClient.models.list()).data.map((m) => m.id)).toEqual(['my-gpt4'])
    // Not in its list, so not found, exactly as a model that does not exist (a 403 would tell it exists).
    const hidden = await limitedClient.models.retrieve('my-embed').catch((e: unknown) => e)
    const missing = await limitedClient.models.retrieve('no-such-model').catch((e: unknown) => e)
    expect(hidden).toBeInstanceOf(OpenAI.NotFoundError)
    expect((hidden as any).error).toEqual({ ...(missing as any).error, message: (missing as any).error.message.replace('no-such-model', 'my-embed') })
  })
})
