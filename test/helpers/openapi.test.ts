import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { DEFAULT_REPLY, fakeEmbedding, startFakeOpenAI, type FakeOpenAI } from './fake-openai.ts'
import { hasSchema, preprocessOpenApi, validateEmbeddingResponse, validateSchema, validateSseBody } from './openapi.ts'

const chatCompletion = () => ({
  id: 'chatcmpl-CQ7nZ4bX1kqVw2aR8sTg5HjLmN3pE',
  object: 'chat.completion',
  created: 1760538412,
  model: 'gpt-4o-2024-08-06',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hi', refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
  system_fingerprint: 'fp_cbf1785567',
})

const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created: 1760538412,
  model: 'gpt-4o-2024-08-06',
  choices: [{ index: 0, delta: { content: 'Hi' }, logprobs: null, ...choice }],
  ...extra,
})

describe('OpenAPI validator', () => {
  test('accepts a valid chat completion and rejects one missing `created`', () => {
    validateSchema('CreateChatCompletionResponse', chatCompletion())
    const { created: _, ...noCreated } = chatCompletion()
    expect(() => validateSchema('CreateChatCompletionResponse', noCreated)).toThrow(/must have required property 'created'/)
  })

  test('lists every violation with its path', () => {
    const bad: any = chatCompletion()
    delete bad.choices[0].logprobs
    delete bad.choices[0].message.refusal
    bad.choices[0].finish_reason = 'done'
    let message = ''
    try {
      validateSchema('CreateChatCompletionResponse', bad)
    } catch (e) {
      message = (e as Error).message
    }
    expect(message).toContain("/choices/0 must have required property 'logprobs'")
    expect(message).toContain("/choices/0/message must have required property 'refusal'")
    expect(message).toContain('/choices/0/finish_reason must be equal to one of the allowed values')
  })

  test('nullable fix: a stream chunk with finish_reason null, logprobs null and usage null is valid', () => {
    validateSchema('CreateChatCompletionStreamResponse', chunk({ finish_reason: null }, { usage: null }))
    validateSchema('CreateChatCompletionStreamResponse', chunk({ finish_reason: 'stop', delta: {} }))
    expect(() => validateSchema('CreateChatCompletionStreamResponse', chunk({ finish_reason: 'done' }))).toThrow(/finish_reason/)
    expect(() => validateSchema('CreateChatCompletionStreamResponse', chunk({}))).toThrow(/finish_reason/)
  })

  test('preprocessOpenApi rewrites nullable, boolean exclusive bounds and $recursiveRef', () => {
    const doc = preprocessOpenApi({
      components: {
        schemas: {
          A: { type: 'string', enum: ['x'], nullable: true },
          B: { $ref: '#/components/schemas/A', nullable: true, description: 'd' },
          C: { type: 'number', minimum: 0, exclusiveMinimum: true },
          D: { type: 'object', properties: { example: { type: 'integer', nullable: true } }, items: { oneOf: [{ type: 'string' }, { $recursiveRef: '#' }] } },
        },
      },
    })
    expect(doc.components.schemas).toEqual({
      A: { type: ['string', 'null'], enum: ['x', null] },
      B: { description: 'd', anyOf: [{ $ref: '#/components/schemas/A' }, { type: 'null' }] },
      C: { type: 'number', exclusiveMinimum: 0 },
      D: { type: 'object', properties: { example: { type: ['integer', 'null'] } }, items: { oneOf: [{ type: 'string' }, { $ref: '#/components/schemas/D' }] } },
    })
  })

  test('unknown schema names fail loudly', () => {
    expect(hasSchema('CreateChatCompletionResponse')).toBe(true)
    expect(() => validateSchema('NoSuchSchema', {})).toThrow(/no components.schemas.NoSuchSchema/)
  })

  test('validateSseBody: recorded fixtures pass and return their chunks', () => {
    for (const [name, count] of [
      ['openai-chat-stream.sse', 41],
      ['openai-tool-stream.sse', 13],
    ] as const) {
      const text = readFileSync(path.resolve(import.meta.dir, '../fixtures', name), 'utf8')
      const chunks = validateSseBody(text, 'CreateChatCompletionStreamResponse')
      expect(chunks).toHaveLength(count)
      expect(chunks[0].object).toBe('chat.completion.chunk')
    }
  })

  test('validateSseBody: missing [DONE], bad chunks and error events are rejected', () => {
    const good = `data: ${JSON.stringify(chunk({ finish_reason: null }))}\n\n`
    expect(validateSseBody(`: ping\n\n${good}data: [DONE]\n\n`, 'CreateChatCompletionStreamResponse')).toHaveLength(1)
    expect(() => validateSseBody(good, 'CreateChatCompletionStreamResponse')).toThrow(/\[DONE\]/)
    const noCreated = `data: ${JSON.stringify({ ...chunk({ finish_reason: null }), created: undefined })}\n\n`
    expect(() => validateSseBody(`${good}${noCreated}data: [DONE]\n\n`, 'CreateChatCompletionStreamResponse')).toThrow(/event #1 .*\n.*'created'/)
    const error = 'data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}\n\n'
    expect(() => validateSseBody(`${good}${error}data: [DONE]\n\n`, 'CreateChatCompletionStreamResponse')).toThrow(/error event/)
    expect(() => validateSseBody(`data: not json\n\ndata: [DONE]\n\n`, 'CreateChatCompletionStreamResponse')).toThrow(/not JSON/)
  })

  test('validateEmbeddingResponse accepts floats and base64 float32, rejects broken base64', () => {
    const response = (embedding: unknown) => ({
      object: 'list',
      data: [{ object: 'embedding', index: 0, embedding }],
      model: 'text-embedding-3-small',
      usage: { prompt_tokens: 1, total_tokens: 1 },
    })
    validateEmbeddingResponse(response([0.1, -0.2]))
    validateEmbeddingResponse(response('AACAPwAAAMA='))
    expect(() => validateEmbeddingResponse(response('AACAPw'))).toThrow(/not base64/)
    expect(() => validateEmbeddingResponse(response('AACA'))).toThrow(/float32/)
    expect(() => validateEmbeddingResponse({ ...response([1]), usage: undefined })).toThrow(/usage/)
  })
})

describe('fake OpenAI upstream speaks the contract', () => {
  let fake: FakeOpenAI
  const post = (p: string, body: unknown, key = 'sk-upstream-test') =>
    fetch(`${fake.url}${p}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const json = async (res: Response | Promise<Response>): Promise<any> => (await res).json()
  const user = (content: string) => [{ role: 'user', content }]
  const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]

  beforeAll(async () => {
    fake = await startFakeOpenAI()
  })
  afterAll(async () => {
    await fake.stop()
  })

  test('chat completion, plain and tool call', async () => {
    const plain = await json(post('/chat/completions', { model: 'gpt-4o', messages: user('hi') }))
    validateSchema('CreateChatCompletionResponse', plain)
    expect(plain.model).toBe('gpt-4o-2024-08-06')
    expect(plain.choices[0].message.content).toBe(DEFAULT_REPLY)
    const tool = await json(post('/chat/completions', { model: 'gpt-4o', messages: user('Weather in Paris?'), tools }))
    validateSchema('CreateChatCompletionResponse', tool)
    expect(tool.choices[0].finish_reason).toBe('tool_calls')
    expect(tool.choices[0].message.tool_calls[0].function).toEqual({ name: 'get_weather', arguments: '{"city":"Paris"}' })
  })

  test('chat streams: include_usage with n=2, and a tool-call stream', async () => {
    const res = await post('/chat/completions', { model: 'gpt-4o', n: 2, stream: true, stream_options: { include_usage: true }, messages: user('hi') })
    expect(res.headers.get('content-type')).toStartWith('text/event-stream')
    const chunks = validateSseBody(await res.text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.every((c) => 'usage' in c)).toBe(true)
    expect(chunks.at(-1).choices).toEqual([])
    expect(chunks.at(-1).usage.completion_tokens).toBe(28)
    for (const index of [0, 1]) {
      const text = chunks.map((c) => (c.choices[0]?.index === index ? (c.choices[0].delta.content ?? '') : '')).join('')
      expect(text).toBe(DEFAULT_REPLY)
    }
    const toolRes = await post('/chat/completions', { model: 'gpt-4o', stream: true, messages: user('weather?'), tools })
    const toolChunks = validateSseBody(await toolRes.text(), 'CreateChatCompletionStreamResponse')
    expect(toolChunks.some((c) => 'usage' in c)).toBe(false)
    expect(toolChunks.at(-1).choices[0].finish_reason).toBe('tool_calls')
  })

  test('completions, embeddings (float and base64), models and error bodies', async () => {
    validateSchema('CreateCompletionResponse', await json(post('/completions', { model: 'gpt-3.5-turbo-instruct', prompt: 'Say hi' })))
    const floats = await json(post('/embeddings', { model: 'text-embedding-3-small', input: ['a', 'b'], dimensions: 4 }))
    validateEmbeddingResponse(floats)
    expect(floats.data[1].embedding).toEqual(fakeEmbedding('b', 4))
    const b64 = await json(post('/embeddings', { model: 'text-embedding-3-small', input: 'a', encoding_format: 'base64' }))
    validateEmbeddingResponse(b64)
    expect(typeof b64.data[0].embedding).toBe('string')
    const models = await json(fetch(`${fake.url}/models`, { headers: { authorization: 'Bearer sk-upstream-test' } }))
    validateSchema('ListModelsResponse', models)
    for (const [content, status] of [
      ['fail-400', 400],
      ['fail-500', 500],
      ['fail-503', 503],
    ] as const) {
      const res = await post('/chat/completions', { model: 'gpt-4o', messages: user(content) })
      expect(res.status).toBe(status)
      validateSchema('ErrorResponse', await res.json())
    }
    const unauthorized = await post('/chat/completions', { model: 'gpt-4o', messages: user('hi') }, 'sk-wrong')
    expect(unauthorized.status).toBe(401)
    const body = await json(unauthorized)
    validateSchema('ErrorResponse', body)
    expect(body.error.code).toBe('invalid_api_key')
  })

  test('stream-stall is counted open until the client aborts; stream-die cuts the body', async () => {
    const aborter = new AbortController()
    const res = await fetch(`${fake.url}/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-upstream-test', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o', stream: true, messages: user('stream-stall') }),
      signal: aborter.signal,
    })
    const reader = res.body!.getReader()
    let text = ''
    while ((text.match(/\n\n/g) ?? []).length < 3) text += new TextDecoder().decode((await reader.read()).value)
    expect(fake.openStreams).toBe(1)
    const abortedBefore = fake.aborted
    aborter.abort()
    await reader.read().catch(() => {})
    for (let i = 0; i < 100 && fake.openStreams > 0; i++) await Bun.sleep(5)
    expect(fake.openStreams).toBe(0)
    expect(fake.aborted).toBe(abortedBefore + 1)

    const died = await post('/chat/completions', { model: 'gpt-4o', stream: true, messages: user('stream-die') })
    expect(died.status).toBe(200)
    await expect(died.text()).rejects.toThrow()
  })
})
