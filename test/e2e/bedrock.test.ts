import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { FAKE_CACHE_READ_TOKENS, FAKE_REPLY, FAKE_TOOL_INPUT, FAKE_TOOL_RESULT_REPLY, fakeEmbedding, startFakeBedrock, type FakeBedrock } from '../helpers/fake-bedrock.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateEmbeddingResponse, validateSchema, validateSseBody } from '../helpers/openapi.ts'

/** The same OpenAI SDK calls, answered by AWS Bedrock (Converse, ConverseStream, Titan embeddings) through the translating adapter. */
let fake: FakeBedrock
let gw: TestGateway
let client: OpenAI
let key: string

const CLAUDE = 'anthropic.claude-3-5-sonnet-20240620-v1:0'
const TITAN = 'amazon.titan-embed-text-v2:0'
const tools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Weather by city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=='

beforeAll(async () => {
  // Small network writes split frames, and the multi-byte characters inside them, anywhere.
  fake = await startFakeBedrock({ streamChunkBytes: 5 })
  gw = await startGateway()
  const t = fake.temporary
  const providers: [string, string][] = [
    ['aws', `${fake.accessKeyId}:${fake.secretAccessKey}`],
    ['aws-temporary', `${t.accessKeyId}:${t.secretAccessKey}:${t.sessionToken}`],
    ['aws-api-key', fake.apiKey],
    ['aws-bad-secret', `${fake.accessKeyId}:not-the-secret-key`],
  ]
  for (const [name, api_key] of providers) {
    await gw.admin('POST', '/providers', { name, type: 'bedrock', base_url: fake.url, api_key, options: { region: 'us-east-1' } })
    await gw.admin('POST', '/models', { name: `claude-${name}`, targets: [{ provider: name, model: CLAUDE }] })
  }
  await gw.admin('POST', '/models', { name: 'claude', targets: [{ provider: 'aws', model: CLAUDE }] })
  await gw.admin('POST', '/models', { name: 'titan', targets: [{ provider: 'aws', model: TITAN }] })
  await gw.admin('POST', '/models', { name: 'titan-aws-bad-secret', targets: [{ provider: 'aws-bad-secret', model: TITAN }] })
  key = (await gw.admin('POST', '/keys', { name: 'sdk' })).key
  client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
})

afterAll(async () => {
  await gw.close()
  fake.stop()
})

const lastUsage = () => fake.usageLog.at(-1)!
const raw = (body: Record<string, unknown>, path = '/chat/completions') =>
  fetch(`${gw.baseURL}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })

describe('bedrock adapter through the gateway', () => {
  test('chat: system prompt, signed Converse call, translation both ways, usage as reported, spec-valid', async () => {
    const { data: res, response } = await client.chat.completions
      .create({
        model: 'claude',
        max_tokens: 256,
        temperature: 0.2,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hello' },
        ],
      })
      .withResponse()
    expect(res.model).toBe('claude')
    expect(res.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(res.choices[0]!.finish_reason).toBe('stop')
    expect({ prompt_tokens: res.usage!.prompt_tokens, completion_tokens: res.usage!.completion_tokens }).toEqual(lastUsage())
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens)
    validateSchema('CreateChatCompletionResponse', res)
    expect(response.headers.get('x-conduit-model')).toBe(CLAUDE)

    const upstream = fake.requests.at(-1)!
    expect(upstream.rawPath).toBe('/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse')
    expect(upstream.headers.authorization).toMatch(new RegExp(`^AWS4-HMAC-SHA256 Credential=${fake.accessKeyId}/\\d{8}/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=[0-9a-f]{64}$`))
    expect(upstream.body).toEqual({
      system: [{ text: 'Be brief.' }],
      messages: [{ role: 'user', content: [{ text: 'Hello' }] }],
      inferenceConfig: { maxTokens: 256, temperature: 0.2 },
    })
    expect(fake.responses.at(-1)!.status).toBe(200)
  })

  test('temporary credentials (session token) and a Bedrock API key authenticate too', async () => {
    const temp = await client.chat.completions.create({ model: 'claude-aws-temporary', messages: [{ role: 'user', content: 'Hello' }] })
    expect(temp.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(fake.requests.at(-1)!.headers['x-amz-security-token']).toBe(fake.temporary.sessionToken)
    expect(fake.requests.at(-1)!.headers.authorization).toContain('SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,')
    const bearer = await client.chat.completions.create({ model: 'claude-aws-api-key', messages: [{ role: 'user', content: 'Hello' }] })
    expect(bearer.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(fake.requests.at(-1)!.headers.authorization).toBe(`Bearer ${fake.apiKey}`)
  })

  test('streaming: finalChatCompletion(), and raw chunks spec-valid with usage from the metadata event', async () => {
    const final = await client.chat.completions.stream({ model: 'claude', messages: [{ role: 'user', content: 'Hello' }] }).finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(final.choices[0]!.finish_reason).toBe('stop')
    expect(fake.requests.at(-1)!.rawPath).toEndWith('/converse-stream')
    expect(fake.requests.at(-1)!.headers.accept).toBe('application/vnd.amazon.eventstream')

    const res = await raw({ model: 'claude', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Hello' }] })
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const text = await res.text()
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
    const chunks = validateSseBody(text, 'CreateChatCompletionStreamResponse')
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(FAKE_REPLY)
    expect(chunks.every((c) => c.model === 'claude')).toBe(true)
    const usage = chunks.at(-1)!.usage
    expect(chunks.at(-1)!.choices).toEqual([])
    expect({ prompt_tokens: usage.prompt_tokens, completion_tokens: usage.completion_tokens }).toEqual(lastUsage())

    const plain = validateSseBody(await (await raw({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'Hello' }] })).text(), 'CreateChatCompletionStreamResponse')
    expect(plain.some((c) => c.usage != null || c.choices.length === 0)).toBe(false)
  })

  test('a stream that comes slowly is relayed as it comes: its first chunk long before its end, within first_byte_ms', async () => {
    // 60 bytes every 40 ms: the binary event stream has no SSE blank line to wait for.
    const whole = await startFakeBedrock()
    const proxy = await startFaultProxy({ hostname: '127.0.0.1', port: Number(new URL(whole.url).port) }, { kind: 'slice', bytes: 60, delayMs: 40 })
    try {
      await gw.admin('POST', '/providers', { name: 'aws-slow', type: 'bedrock', base_url: proxy.url(), api_key: `${whole.accessKeyId}:${whole.secretAccessKey}`, options: { region: 'us-east-1', timeouts: { first_byte_ms: 600 } } })
      await gw.admin('POST', '/models', { name: 'claude-slow', targets: [{ provider: 'aws-slow', model: CLAUDE }] })
      const started = performance.now()
      const res = await raw({ model: 'claude-slow', stream: true, messages: [{ role: 'user', content: 'Hello' }] })
      expect(res.status).toBe(200)
      const reader = res.body!.getReader()
      let text = ''
      let firstContent = Infinity
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        text += new TextDecoder().decode(value)
        if (firstContent === Infinity && text.includes('"content":"')) firstContent = performance.now() - started
      }
      const total = performance.now() - started
      expect(total).toBeGreaterThan(700)
      expect(firstContent).toBeLessThan(total / 2)
      expect(validateSseBody(text, 'CreateChatCompletionStreamResponse').map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(FAKE_REPLY)
      console.log(`slow Bedrock stream: first content at ${firstContent.toFixed(0)} ms, the end at ${total.toFixed(0)} ms`)
    } finally {
      proxy.stop()
      whole.stop()
    }
  }, 20_000)

  test('tool call round trip, streamed and not', async () => {
    const ask = { model: 'claude', tools, messages: [{ role: 'user' as const, content: 'What is the weather in Paris?' }] }
    const first = await client.chat.completions.create(ask)
    validateSchema('CreateChatCompletionResponse', first)
    expect(first.choices[0]!.finish_reason).toBe('tool_calls')
    const call = first.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall
    expect(call.id).toMatch(/^tooluse_/)
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual(FAKE_TOOL_INPUT)
    expect({ prompt_tokens: first.usage!.prompt_tokens, completion_tokens: first.usage!.completion_tokens }).toEqual(lastUsage())
    expect(fake.requests.at(-1)!.body.toolConfig).toEqual({
      tools: [{ toolSpec: { name: 'get_weather', description: 'Weather by city', inputSchema: { json: tools[0]!.function.parameters } } }],
    })

    const streamed = await client.chat.completions.stream(ask).finalChatCompletion()
    const streamedCall = streamed.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall
    expect(JSON.parse(streamedCall.function.arguments)).toEqual(FAKE_TOOL_INPUT)
    expect(streamed.choices[0]!.finish_reason).toBe('tool_calls')
    const chunks = validateSseBody(await (await raw({ ...ask, stream: true })).text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []).filter((t: any) => t.id)).toHaveLength(1)

    const history = [...ask.messages, { role: 'assistant' as const, content: null, tool_calls: [call] }, { role: 'tool' as const, tool_call_id: call.id, content: '{"sky":"sunny"}' }]
    const answer = await client.chat.completions.create({ model: 'claude', tools, messages: history })
    expect(answer.choices[0]!.message.content).toBe(FAKE_TOOL_RESULT_REPLY)
    const sent = fake.requests.at(-1)!.body.messages
    expect(sent[1].content[0]).toEqual({ toolUse: { toolUseId: call.id, name: 'get_weather', input: FAKE_TOOL_INPUT } })
    expect(sent[2].content[0]).toEqual({ toolResult: { toolUseId: call.id, content: [{ text: '{"sky":"sunny"}' }] } })
    const streamedAnswer = await client.chat.completions.stream({ model: 'claude', tools, messages: history }).finalChatCompletion()
    expect(streamedAnswer.choices[0]!.message.content).toBe(FAKE_TOOL_RESULT_REPLY)

    // A final answer forced with tool_choice "none" after tool calls: Converse needs the tools, the choice is reported lost.
    const { response } = await client.chat.completions.create({ model: 'claude', tools, tool_choice: 'none', messages: history }).withResponse()
    expect(response.headers.get('x-conduit-dropped-params')).toBe('tool_choice')
  })

  test('an image (data URL) reaches Converse as bytes; a web URL is refused naming the part', async () => {
    await client.chat.completions.create({
      model: 'claude',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }] }],
    })
    expect(fake.requests.at(-1)!.body.messages[0].content[1]).toEqual({ image: { format: 'png', source: { bytes: PNG } } })
    const sent = fake.requests.length
    const refused = await client.chat.completions
      .create({ model: 'claude', messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }] })
      .catch((e) => e)
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError)
    expect(refused.param).toBe('messages[0].content[0].image_url.url')
    expect(fake.requests.length).toBe(sent)
  })

  test('embeddings: float and base64 (the SDK default), one Titan call per input, usage summed', async () => {
    const before = fake.requests.length
    const floats = await client.embeddings.create({ model: 'titan', input: ['hello', 'wide world'], encoding_format: 'float', dimensions: 256 })
    validateSchema('CreateEmbeddingResponse', floats)
    expect(floats.model).toBe('titan')
    expect(floats.data.map((d) => d.index)).toEqual([0, 1])
    expect(floats.data[1]!.embedding).toEqual(fakeEmbedding('wide world', 256))
    expect(floats.usage).toEqual({ prompt_tokens: 2 + 3, total_tokens: 5 })
    expect(lastUsage()).toEqual({ prompt_tokens: 5, completion_tokens: 0 })
    const calls = fake.requests.slice(before)
    expect(calls.map((r) => r.rawPath)).toEqual(['/model/amazon.titan-embed-text-v2%3A0/invoke', '/model/amazon.titan-embed-text-v2%3A0/invoke'])
    expect(calls.map((r) => r.body.inputText).sort()).toEqual(['hello', 'wide world'])
    expect(calls[0]!.body).toMatchObject({ dimensions: 256, normalize: true })

    const decoded = await client.embeddings.create({ model: 'titan', input: ['hello', 'wide world'], dimensions: 256 })
    expect(decoded.usage).toEqual(floats.usage)
    decoded.data.forEach((d, i) => expect(d.embedding).toEqual(floats.data[i]!.embedding))
    const single = (await (await raw({ model: 'titan', input: 'hello', encoding_format: 'base64' }, '/embeddings')).json()) as any
    expect(typeof single.data[0].embedding).toBe('string')
    expect(single.usage).toEqual({ prompt_tokens: 2, total_tokens: 2 })
    validateEmbeddingResponse(single)

    const failed = await client.embeddings.create({ model: 'titan', input: ['hello', 'fail-503'] }).catch((e) => e)
    expect(failed.status).toBe(503)
    expect(failed.error.message).toBe('Bedrock is unable to process your request.')
    const legacy = await client.completions.create({ model: 'claude', prompt: 'x' }).catch((e) => e)
    expect(legacy.code).toBe('unsupported_endpoint')
  })

  test('errors: every Bedrock exception class maps to a status OpenAI clients understand', async () => {
    const cases: [string, number, new (...args: any[]) => Error, string | null][] = [
      ['fail-400', 400, OpenAI.BadRequestError, 'ValidationException'],
      ['fail-404', 404, OpenAI.NotFoundError, 'ResourceNotFoundException'],
      ['fail-408', 504, OpenAI.InternalServerError, 'ModelTimeoutException'],
      ['fail-424', 502, OpenAI.InternalServerError, 'ModelErrorException'],
      ['fail-429', 429, OpenAI.RateLimitError, 'ThrottlingException'],
      ['fail-500', 500, OpenAI.InternalServerError, 'InternalServerException'],
      ['fail-503', 503, OpenAI.InternalServerError, 'ServiceUnavailableException'],
      // AccessDenied is about our credentials' permissions: the client gets the gateway's 502.
      ['fail-403', 502, OpenAI.InternalServerError, 'upstream_auth_failed'],
    ]
    for (const [trigger, status, type, code] of cases) {
      const before = fake.usageLog.length
      const err = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: trigger }] }).catch((e) => e)
      expect([trigger, err instanceof type, err.status, err.code]).toEqual([trigger, true, status, code])
      validateSchema('Error', err.error)
      expect(fake.usageLog.length).toBe(before)
      // The same before the first byte of a stream.
      const streamed = await client.chat.completions.stream({ model: 'claude', messages: [{ role: 'user', content: trigger }] }).finalChatCompletion().catch((e) => e)
      expect([trigger, streamed.status]).toEqual([trigger, status])
    }
    const bad = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'fail-400' }] }).catch((e) => e)
    expect(bad.error.message).toBe('The model returned the following errors: Input is too long for requested model. (fail-400)')
    // Bedrock's own validation: a conversation must start with a user turn.
    const order = await client.chat.completions
      .create({ model: 'claude', messages: [{ role: 'assistant', content: 'Hi!' }, { role: 'user', content: 'Hello' }] })
      .catch((e) => e)
    expect(order.status).toBe(400)
    expect(order.error.message).toBe('A conversation must start with a user message. Try again with a conversation that starts with a user message.')
  })

  test('a wrong secret: the fake refuses the signature, the client gets 502 upstream_auth_failed without AWS’s text', async () => {
    const err = await client.chat.completions.create({ model: 'claude-aws-bad-secret', messages: [{ role: 'user', content: 'hi' }] }).catch((e) => e)
    expect(err.status).toBe(502)
    expect(err.code).toBe('upstream_auth_failed')
    expect(err.error.message).not.toContain('signature')
    expect(fake.responses.at(-1)).toMatchObject({ status: 403, errorType: 'InvalidSignatureException' })
    // The same from the embeddings fan-out, which calls Bedrock itself.
    for (const input of ['a', ['a', 'b']]) {
      const embeddings = await client.embeddings.create({ model: 'titan-aws-bad-secret', input }).catch((e) => e)
      expect([embeddings.status, embeddings.code]).toEqual([502, 'upstream_auth_failed'])
    }
  })

  test('an exception frame mid-stream reaches the SDK as an APIError; the raw stream ends with the error, no [DONE]', async () => {
    const before = fake.usageLog.length
    const failed = await client.chat.completions.stream({ model: 'claude', messages: [{ role: 'user', content: 'midstream-error' }] }).finalChatCompletion().catch((e) => e)
    expect(failed).toBeInstanceOf(OpenAI.APIError)
    expect(failed.error?.message).toBe('The model encountered an error while streaming the response. (midstream-error)')
    const text = await (await raw({ model: 'claude', stream: true, messages: [{ role: 'user', content: 'midstream-error' }] })).text()
    expect(text).not.toContain('[DONE]')
    const last = JSON.parse(text.trimEnd().split('\n\n').at(-1)!.slice('data: '.length))
    expect(last.error).toMatchObject({ type: 'server_error', code: 'ModelStreamErrorException' })
    expect(fake.usageLog.length).toBe(before)
  })

  test('finish_reason length: the scripted truncation and max_tokens, streamed and not', async () => {
    const cut = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'finish-length' }] })
    expect(cut.choices[0]!.finish_reason).toBe('length')
    expect(FAKE_REPLY.startsWith(cut.choices[0]!.message.content!)).toBe(true)
    expect(cut.usage!.completion_tokens).toBe(3)
    const limited = await client.chat.completions.create({ model: 'claude', max_tokens: 2, messages: [{ role: 'user', content: 'Hello' }] })
    expect(limited.choices[0]!.finish_reason).toBe('length')
    expect(limited.choices[0]!.message.content).toBe('Hello from')
    const chunks = validateSseBody(await (await raw({ model: 'claude', stream: true, max_tokens: 2, messages: [{ role: 'user', content: 'Hello' }] })).text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.flatMap((c) => c.choices.map((x: any) => x.finish_reason)).filter(Boolean)).toEqual(['length'])
  })

  test('cached prompt tokens: reported by Bedrock apart, counted in prompt_tokens and shown as cached_tokens', async () => {
    const res = await client.chat.completions.create({ model: 'claude', messages: [{ role: 'user', content: 'cache-hit please' }] })
    expect(res.usage!.prompt_tokens_details?.cached_tokens).toBe(FAKE_CACHE_READ_TOKENS)
    expect({ prompt_tokens: res.usage!.prompt_tokens, completion_tokens: res.usage!.completion_tokens }).toEqual(lastUsage())
    validateSchema('CreateChatCompletionResponse', res)
  })

  test('dropped parameters are signalled, never silent; n > 1 is refused', async () => {
    const { response } = await client.chat.completions.create({ model: 'claude', seed: 7, logprobs: true, messages: [{ role: 'user', content: 'hi' }] }).withResponse()
    expect(response.headers.get('x-conduit-dropped-params')?.split(',').sort()).toEqual(['logprobs', 'seed'])
    expect(fake.requests.at(-1)!.body).toEqual({ messages: [{ role: 'user', content: [{ text: 'hi' }] }] })
    const n = await client.chat.completions.create({ model: 'claude', n: 2, messages: [{ role: 'user', content: 'hi' }] }).catch((e) => e)
    expect(n).toBeInstanceOf(OpenAI.BadRequestError)
    expect(n.param).toBe('n')
  })
})
