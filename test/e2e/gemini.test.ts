import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import gemini from '../../src/providers/gemini/index.ts'
import { thoughtSignatureOf } from '../../src/providers/gemini/tool-ids.ts'
import { registeredAdapter } from '../helpers/adapter.ts'
import { FAKE_API_KEY, FAKE_REPLY, FAKE_TOOL_INPUT, FAKE_TOOL_RESULT_REPLY, startFakeGemini, type FakeGemini } from '../helpers/fake-gemini.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateEmbeddingResponse, validateSchema, validateSseBody } from '../helpers/openapi.ts'
import { CLIENT_MODEL, fixtureBytes, ignoreCreated, relayRecorded, replayEverySplit, type SplitReplayOptions } from '../helpers/relay.ts'

/** The same OpenAI SDK calls, answered by the Gemini API through the translating adapter. */
let fake: FakeGemini
let gw: TestGateway
let client: OpenAI
let key: string

const THOUGHTS = 5
const tools = [
  {
    type: 'function' as const,
    function: { name: 'get_weather', description: 'Weather by city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false } },
  },
]
const weatherQuestion = [{ role: 'user' as const, content: 'What is the weather in Paris?' }]

beforeAll(async () => {
  // Small writes split events, CRLFs and multi-byte characters; thinking tokens make completion ≠ candidates.
  fake = await startFakeGemini({ streamChunkBytes: 5, thoughtsTokens: THOUGHTS })
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'google', type: 'gemini', base_url: fake.url, api_key: FAKE_API_KEY })
  await gw.admin('POST', '/providers', { name: 'google-bad-key', type: 'gemini', base_url: fake.url, api_key: 'AIza-not-the-key' })
  await gw.admin('POST', '/providers', { name: 'google-no-key', type: 'gemini', base_url: fake.url })
  await gw.admin('POST', '/models', { name: 'flash', targets: [{ provider: 'google', model: 'gemini-2.5-flash' }] })
  await gw.admin('POST', '/models', { name: 'pro3', targets: [{ provider: 'google', model: 'gemini-3-pro-preview' }] })
  await gw.admin('POST', '/models', { name: 'embed', targets: [{ provider: 'google', model: 'gemini-embedding-001' }] })
  await gw.admin('POST', '/models', { name: 'misconfigured', targets: [{ provider: 'google-bad-key', model: 'gemini-2.5-flash' }] })
  await gw.admin('POST', '/models', { name: 'keyless', targets: [{ provider: 'google-no-key', model: 'gemini-2.5-flash' }] })
  key = (await gw.admin('POST', '/keys', { name: 'sdk' })).key
  client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
})

afterAll(async () => {
  await gw.close()
  fake.stop()
})

const post = (p: string, body: unknown) =>
  fetch(`${gw.baseURL}${p}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })

/** The usage the fake reported for the generation just made, as OpenAI's usage. */
const reported = () => {
  const u = fake.usageLog.at(-1)!
  return { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.prompt_tokens + u.completion_tokens }
}

describe('gemini adapter through the gateway', () => {
  test('chat: system prompt, translation both ways, the fake’s usage, spec-valid', async () => {
    const { data: res, response } = await client.chat.completions
      .create({
        model: 'flash',
        max_tokens: 256,
        temperature: 0.2,
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hello' },
        ],
      })
      .withResponse()
    expect(res.model).toBe('flash')
    expect(res.id).toMatch(/^chatcmpl-/)
    expect(res.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(res.choices[0]!.finish_reason).toBe('stop')
    validateSchema('CreateChatCompletionResponse', res)
    expect(res.usage).toMatchObject({ ...reported(), completion_tokens_details: { reasoning_tokens: THOUGHTS } })
    expect(response.headers.get('x-conduit-model')).toBe('gemini-2.5-flash')
    expect(response.headers.get('x-conduit-dropped-params')).toBeNull()

    const upstream = fake.requests.at(-1)!
    expect(upstream.path).toBe('/v1beta/models/gemini-2.5-flash:generateContent')
    expect(upstream.headers['x-goog-api-key']).toBe(FAKE_API_KEY)
    expect(upstream.headers.authorization).toBeUndefined()
    expect(upstream.query).toEqual({})
    expect(upstream.body).toEqual({
      contents: [{ role: 'user', parts: [{ text: 'Hello' }] }],
      systemInstruction: { parts: [{ text: 'Be brief.' }] },
      generationConfig: { maxOutputTokens: 256, temperature: 0.2 },
    })
  })

  test('streaming with finalChatCompletion() and spec-valid chunks (upstream split mid-character and mid-CRLF)', async () => {
    const final = await client.chat.completions.stream({ model: 'flash', messages: [{ role: 'user', content: 'Hello' }] }).finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(final.choices[0]!.finish_reason).toBe('stop')
    expect(fake.requests.at(-1)!.path).toBe('/v1beta/models/gemini-2.5-flash:streamGenerateContent')
    expect(fake.requests.at(-1)!.query).toEqual({ alt: 'sse' })

    const res = await post('/chat/completions', { model: 'flash', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Hello' }] })
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const chunks = validateSseBody(await res.text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(FAKE_REPLY)
    expect(chunks.every((c) => c.model === 'flash')).toBe(true)
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1)
    // The fake's earlier events carry running counts: one usage chunk only, last, with the final counts.
    expect(chunks.filter((c) => c.usage).length).toBe(1)
    expect(chunks.at(-1)!.choices).toEqual([])
    expect(chunks.at(-1)!.usage).toMatchObject(reported())

    const plain = await post('/chat/completions', { model: 'flash', stream: true, messages: [{ role: 'user', content: 'Hello' }] })
    const plainChunks = validateSseBody(await plain.text(), 'CreateChatCompletionStreamResponse')
    expect(plainChunks.some((c) => c.usage != null || c.choices.length === 0)).toBe(false)
  })

  test('tool call round trip, streamed and not', async () => {
    const ask = { model: 'flash', tools, messages: weatherQuestion }
    const first = await client.chat.completions.create(ask)
    validateSchema('CreateChatCompletionResponse', first)
    expect(first.choices[0]!.finish_reason).toBe('tool_calls')
    expect(first.choices[0]!.message.content).toBeNull()
    const call = first.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall
    expect(call.id).toMatch(/^call_[A-Za-z0-9]{24}$/)
    expect(call.function.name).toBe('get_weather')
    expect(JSON.parse(call.function.arguments)).toEqual(FAKE_TOOL_INPUT)
    expect(first.usage).toMatchObject(reported())
    const declared = fake.requests.at(-1)!.body.tools
    expect(declared).toEqual([{ functionDeclarations: [{ name: 'get_weather', description: 'Weather by city', parametersJsonSchema: tools[0]!.function.parameters }] }])

    const streamed = await client.chat.completions.stream(ask).finalChatCompletion()
    const streamedCall = streamed.choices[0]!.message.tool_calls![0] as OpenAI.Chat.ChatCompletionMessageFunctionToolCall
    expect(JSON.parse(streamedCall.function.arguments)).toEqual(FAKE_TOOL_INPUT)
    expect(streamedCall.id).toMatch(/^call_/)
    expect(streamed.choices[0]!.finish_reason).toBe('tool_calls')

    const answer = await client.chat.completions.create({
      model: 'flash',
      tools,
      tool_choice: 'auto',
      messages: [...weatherQuestion, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: '{"sky":"sunny"}' }],
    })
    expect(answer.choices[0]!.message.content).toBe(FAKE_TOOL_RESULT_REPLY)
    expect(answer.choices[0]!.finish_reason).toBe('stop')
    const sent = fake.requests.at(-1)!.body
    expect(sent.contents).toEqual([
      { role: 'user', parts: [{ text: 'What is the weather in Paris?' }] },
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: FAKE_TOOL_INPUT } }] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { sky: 'sunny' } } }] },
    ])
    expect(sent.toolConfig).toEqual({ functionCallingConfig: { mode: 'AUTO' } })

    const streamedAnswer = await client.chat.completions
      .stream({ model: 'flash', tools, messages: [...weatherQuestion, { role: 'assistant', content: null, tool_calls: [streamedCall] }, { role: 'tool', tool_call_id: streamedCall.id, content: 'sunny' }] })
      .finalChatCompletion()
    expect(streamedAnswer.choices[0]!.message.content).toBe(FAKE_TOOL_RESULT_REPLY)
    expect(fake.requests.at(-1)!.body.contents[2].parts[0].functionResponse).toEqual({ name: 'get_weather', response: { output: 'sunny' } })
  })

  test('Gemini 3: the thought signature rides in the tool call id and goes back upstream', async () => {
    const first = await client.chat.completions.stream({ model: 'pro3', tools, messages: weatherQuestion }).finalChatCompletion()
    const call = first.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall
    const signature = thoughtSignatureOf(call.id)
    expect(signature).toBeTruthy()
    const answer = await client.chat.completions.create({
      model: 'pro3',
      tools,
      messages: [...weatherQuestion, { role: 'assistant', content: null, tool_calls: [call] }, { role: 'tool', tool_call_id: call.id, content: '{"sky":"sunny"}' }],
    })
    expect(answer.choices[0]!.message.content).toBe(FAKE_TOOL_RESULT_REPLY)
    expect(fake.requests.at(-1)!.body.contents[1].parts[0]).toEqual({ functionCall: { name: 'get_weather', args: FAKE_TOOL_INPUT }, thoughtSignature: signature })

    // History whose ids lost the signature: Gemini's own 400 reaches the client.
    const lost = await client.chat.completions
      .create({
        model: 'pro3',
        tools,
        messages: [...weatherQuestion, { role: 'assistant', content: null, tool_calls: [{ ...call, id: 'call_rewritten' }] }, { role: 'tool', tool_call_id: 'call_rewritten', content: 'x' }],
      })
      .catch((e) => e)
    expect(lost).toBeInstanceOf(OpenAI.BadRequestError)
    expect(lost.message).toContain('missing a thought_signature')
  })

  test('images: data URLs inline, http(s) URLs as fileData', async () => {
    const res = await client.chat.completions.create({
      model: 'flash',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            { type: 'image_url', image_url: { url: 'https://example.com/photos/cat.png' } },
          ],
        },
      ],
    })
    expect(res.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(fake.requests.at(-1)!.body.contents[0].parts).toEqual([
      { text: 'What is this?' },
      { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } },
      { fileData: { mimeType: 'image/png', fileUri: 'https://example.com/photos/cat.png' } },
    ])
    // Gemini bills an image as 258 prompt tokens: the usage is the fake's, not an estimate.
    expect(res.usage).toMatchObject(reported())
    expect(res.usage!.prompt_tokens).toBeGreaterThan(2 * 258)
  })

  test('embeddings: float, and base64 (the SDK default) decoding to the same vectors', async () => {
    const floats = await client.embeddings.create({ model: 'embed', input: ['hello', 'wonderful world'], encoding_format: 'float', dimensions: 16 })
    validateSchema('CreateEmbeddingResponse', floats)
    expect(floats.model).toBe('embed')
    expect(floats.data.map((d) => [d.index, d.embedding.length])).toEqual([
      [0, 16],
      [1, 16],
    ])
    expect({ prompt_tokens: floats.usage.prompt_tokens, completion_tokens: 0 }).toEqual(fake.usageLog.at(-1)!)
    const upstream = fake.requests.at(-1)!
    expect(upstream.path).toBe('/v1beta/models/gemini-embedding-001:batchEmbedContents')
    expect(upstream.body.requests[1]).toEqual({ model: 'models/gemini-embedding-001', content: { parts: [{ text: 'wonderful world' }] }, outputDimensionality: 16 })

    const decoded = await client.embeddings.create({ model: 'embed', input: ['hello', 'wonderful world'], dimensions: 16 })
    expect(fake.requests.at(-1)!.body.requests[0].encoding_format).toBeUndefined()
    decoded.data.forEach((d, i) => d.embedding.forEach((v, j) => expect(v).toBe(Math.fround(floats.data[i]!.embedding[j]!))))

    const raw = (await (await post('/embeddings', { model: 'embed', input: 'hello', encoding_format: 'base64' })).json()) as any
    expect(typeof raw.data[0].embedding).toBe('string')
    validateEmbeddingResponse(raw)
    expect(Buffer.from(raw.data[0].embedding, 'base64').length).toBe(3072 * 4)

    const tokens = await client.embeddings.create({ model: 'embed', input: [[1, 2, 3]] }).catch((e) => e)
    expect(tokens).toBeInstanceOf(OpenAI.BadRequestError)
    expect(tokens.param).toBe('input')
  })

  test('errors: Google envelopes become ours with the right status, code and retry hint', async () => {
    const ask = (content: string, model = 'flash') => client.chat.completions.create({ model, messages: [{ role: 'user', content }] }).catch((e) => e)
    const before = fake.usageLog.length
    const bad = await ask('fail-400')
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError)
    expect(bad.error).toEqual({ message: 'Request contains an invalid argument.', type: 'invalid_request_error', param: null, code: 'invalid_argument' })
    validateSchema('Error', bad.error)
    const limited = await ask('fail-429')
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError)
    expect(limited.code).toBe('resource_exhausted')
    expect(limited.headers.get('retry-after')).toBe('3')
    const internal = await ask('fail-500')
    expect(internal).toBeInstanceOf(OpenAI.InternalServerError)
    expect([internal.status, internal.code, internal.error.type]).toEqual([500, 'internal', 'server_error'])
    const overloaded = await ask('fail-503')
    expect([overloaded.status, overloaded.code]).toEqual([503, 'unavailable'])
    expect(fake.usageLog.length).toBe(before)

    // Google answers a wrong key with 400 API_KEY_INVALID and no key with 403: both are the gateway's fault.
    for (const model of ['misconfigured', 'keyless']) {
      const auth = await ask('hi', model)
      expect([auth.status, auth.code]).toEqual([502, 'upstream_auth_failed'])
      expect(auth.message).not.toContain('AIza-not-the-key')
      expect(auth.message).not.toContain('API key not valid')
    }

    const unknownCall = await client.chat.completions.create({ model: 'flash', messages: [{ role: 'user', content: 'x' }, { role: 'tool', tool_call_id: 'nope', content: 'r' }] }).catch((e) => e)
    expect(unknownCall).toBeInstanceOf(OpenAI.BadRequestError)
    expect(unknownCall.param).toBe('messages[1].tool_call_id')
    const completions = await client.completions.create({ model: 'flash', prompt: 'x' }).catch((e) => e)
    expect([completions.status, completions.code]).toEqual([400, 'unsupported_endpoint'])
  })

  test('finish-length and max_tokens → finish_reason length, streamed and not; n → candidateCount', async () => {
    const cut = await client.chat.completions.create({ model: 'flash', max_tokens: 3, messages: [{ role: 'user', content: 'finish-length' }] })
    expect(cut.choices[0]!.finish_reason).toBe('length')
    expect(cut.choices[0]!.message.content).toBe('Hello from fake')
    expect(fake.requests.at(-1)!.body.generationConfig).toEqual({ maxOutputTokens: 3 })
    expect(cut.usage).toMatchObject(reported())
    const raw = await post('/chat/completions', { model: 'flash', max_tokens: 3, stream: true, messages: [{ role: 'user', content: 'finish-length' }] })
    const chunks = validateSseBody(await raw.text(), 'CreateChatCompletionStreamResponse')
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Hello from fake')
    expect(chunks.flatMap((c) => c.choices.map((x: any) => x.finish_reason)).filter(Boolean)).toEqual(['length'])

    const two = await client.chat.completions.create({ model: 'flash', n: 2, messages: [{ role: 'user', content: 'Hello' }] })
    validateSchema('CreateChatCompletionResponse', two)
    expect(two.choices.map((c) => [c.index, c.message.content])).toEqual([
      [0, FAKE_REPLY],
      [1, FAKE_REPLY],
    ])
    expect(two.usage).toMatchObject(reported())
    const twoStreamed = await client.chat.completions.stream({ model: 'flash', n: 2, messages: [{ role: 'user', content: 'Hello' }] }).finalChatCompletion()
    expect(twoStreamed.choices.map((c) => c.message.content)).toEqual([FAKE_REPLY, FAKE_REPLY])
  })

  test('a blocked prompt → content_filter with empty content, streamed and not', async () => {
    const res = await client.chat.completions.create({ model: 'flash', messages: [{ role: 'user', content: 'prompt-blocked' }] })
    validateSchema('CreateChatCompletionResponse', res)
    expect(res.choices).toEqual([{ index: 0, message: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: 'content_filter' }])
    const streamed = await client.chat.completions.stream({ model: 'flash', messages: [{ role: 'user', content: 'prompt-blocked' }] }).finalChatCompletion()
    expect(streamed.choices[0]!.finish_reason).toBe('content_filter')
  })

  test('an error event mid-stream reaches the SDK as an APIError, after some content', async () => {
    const before = fake.usageLog.length
    const failed = await client.chat.completions.stream({ model: 'flash', messages: [{ role: 'user', content: 'midstream-error' }] }).finalChatCompletion().catch((e) => e)
    expect(failed).toBeInstanceOf(OpenAI.APIError)
    expect(failed.message).toContain('An internal error has occurred')

    const res = await post('/chat/completions', { model: 'flash', stream: true, messages: [{ role: 'user', content: 'midstream-error' }] })
    const text = await res.text()
    expect(text).not.toContain('[DONE]')
    const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => JSON.parse(e.slice(6)))
    expect(events.at(-1)).toEqual({ error: { message: expect.stringContaining('An internal error has occurred'), type: 'server_error', param: null, code: 'internal' } })
    const content = events.slice(0, -1).map((e) => e.choices?.[0]?.delta?.content ?? '').join('')
    expect(content.length).toBeGreaterThan(0)
    expect(FAKE_REPLY.startsWith(content)).toBe(true)
    expect(fake.usageLog.length).toBe(before)
  })

  test('dropped parameters are signalled, never silent; carried ones reach generationConfig', async () => {
    const { response } = await client.chat.completions
      .create({ model: 'flash', seed: 7, logprobs: true, user: 'u-1', presence_penalty: 0.5, stop: ['zzz'], messages: [{ role: 'user', content: 'hi' }] })
      .withResponse()
    expect(response.headers.get('x-conduit-dropped-params')?.split(',').sort()).toEqual(['logprobs', 'user'])
    expect(fake.requests.at(-1)!.body.generationConfig).toEqual({ seed: 7, presencePenalty: 0.5, stopSequences: ['zzz'] })
    const json = await client.chat.completions.create({
      model: 'flash',
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { type: 'string' } }, additionalProperties: false } } },
      messages: [{ role: 'user', content: 'hi' }],
    })
    expect(json.choices[0]!.message.content).toBe(FAKE_REPLY)
    expect(fake.requests.at(-1)!.body.generationConfig).toEqual({
      responseMimeType: 'application/json',
      responseJsonSchema: { type: 'object', properties: { a: { type: 'string' } }, additionalProperties: false },
    })
  })
})

// ---------------------------------------------------------------------------------------------------------------
// The recorded stream through the real relay, split at every byte offset (harness in test/helpers/relay.ts).

const relayed: SplitReplayOptions = {
  adapter: (await registeredAdapter(gemini)).chat,
  includeUsage: true,
  provider: { type: 'gemini' },
  upstreamModel: 'gemini-2.5-flash',
  // Per-parse values: `created` and the random part of generated tool call ids.
  normalise: (text) => ignoreCreated(text).replace(/"id":"call_[A-Za-z0-9]{24}/g, '"id":"call_'),
}

describe('recorded Gemini stream through the real relay', () => {
  test('the same client bytes whatever the split', async () => {
    const bytes = await fixtureBytes('gemini-stream.sse')
    expect(new TextDecoder().decode(bytes)).toContain('\r\n\r\n')
    const { chunks, outcome } = await replayEverySplit(bytes, relayed)
    expect(chunks.every((c) => c.model === CLIENT_MODEL && c.id === 'chatcmpl-qYbzaKnAIbKXz7IP7Yi0oQU')).toBe(true)
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Let me check the weather in 東京 for you ☀️🌧️ — 少々お待ちください。')
    const call = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? [])
    expect(call).toHaveLength(1)
    expect(call[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather', arguments: '{"location":"東京","unit":"celsius"}' } })
    expect(thoughtSignatureOf(call[0].id)).toBe('pU3KGCUwux1tEyze1iN7LtkeP3IfyxlxF0SU1kk8nVw0YL4xIB5p/tqg7ui5mX9cfCmZ/a/lkyU81lSvTfo=')
    expect(chunks.flatMap((c) => c.choices.map((x: any) => x.finish_reason)).filter(Boolean)).toEqual(['tool_calls'])
    expect(outcome.usage).toEqual({
      prompt_tokens: 71,
      completion_tokens: 135,
      total_tokens: 206,
      prompt_tokens_details: { cached_tokens: 32 },
      completion_tokens_details: { reasoning_tokens: 96 },
    } as any)

    // Without include_usage the usage chunk is stripped but still counted.
    const quiet = await relayRecorded([bytes], { ...relayed, includeUsage: false })
    expect(quiet.text).not.toContain('"usage"')
    expect(quiet.outcome.usage).toEqual(outcome.usage)
  }, 60_000)
})
