import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SseDecoder } from '../../src/core/sse/decoder.ts'
import type { OpenAIChunk } from '../../src/plugin-sdk/index.ts'
import { buildEmbedRequest, parseEmbedResponse } from '../../src/providers/cohere/embed.ts'
import plugin from '../../src/providers/cohere/index.ts'
import { buildChatRequest } from '../../src/providers/cohere/request.ts'
import { parseChatResponse, parseError } from '../../src/providers/cohere/response.ts'
import { createStreamParser } from '../../src/providers/cohere/stream.ts'
import { attemptFor, expectGatewayError, registeredAdapter } from '../helpers/adapter.ts'
import { FAKE_API_KEY, FAKE_REPLY, FAKE_TOOL_PLAN, FAKE_TOOL_RESULT_REPLY, TEMPLATE_TOKENS, startFakeCohere, type FakeCohere } from '../helpers/fake-cohere.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { CLIENT_MODEL, fixtureBytes, ignoreCreated, replayEverySplit } from '../helpers/relay.ts'

const fixture = await fixtureBytes('cohere-stream.sse')

const attempt = (provider: Record<string, any> = {}, model = 'command-a-03-2025') => attemptFor({ name: 'co', type: 'cohere', apiKey: 'k', ...provider }, model)

function translate(body: Record<string, any>, provider: Record<string, any> = {}) {
  const ctx = attempt(provider)
  const upstream = buildChatRequest(body, ctx)
  return { upstream, json: JSON.parse(upstream.body as string), dropped: ctx.dropped }
}

const chat = (messages: any[], extra: Record<string, any> = {}) => ({ model: 'virtual', messages, ...extra })
const hi = [{ role: 'user', content: 'hi' }]


describe('plugin', () => {
  test('registers cohere with translating chat and embeddings, no legacy completions', async () => {
    const adapter = await registeredAdapter(plugin)
    expect(plugin.name).toBe('provider-cohere')
    expect(adapter.id).toBe('cohere')
    expect(adapter.defaultBaseURL).toBe('https://api.cohere.com')
    expect(adapter.chat?.passthrough).toBe(false)
    expect(adapter.embeddings?.passthrough).toBe(false)
    expect(adapter.completions).toBeUndefined()
  })
})

describe('chat request translation', () => {
  test('URL, Bearer auth, model; base URLs with or without a version suffix', () => {
    const { upstream, json } = translate(chat(hi))
    expect(upstream.url).toBe('https://api.cohere.com/v2/chat')
    expect(upstream.headers).toEqual({ 'content-type': 'application/json', accept: 'application/json', authorization: 'Bearer k' })
    expect(json).toEqual({ model: 'command-a-03-2025', messages: [{ role: 'user', content: 'hi' }] })
    expect(translate(chat(hi), { baseURL: 'https://co.example/v2/' }).upstream.url).toBe('https://co.example/v2/chat')
    expect(translate(chat(hi, { stream: true })).upstream.headers.accept).toBe('text/event-stream')
  })

  test('system and developer messages become one leading system message', () => {
    const { json } = translate(
      chat([
        { role: 'user', content: 'one' },
        { role: 'system', content: 'Be terse.' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in ' }, { type: 'text', text: 'French.' }] },
        { role: 'assistant', content: 'un' },
        { role: 'user', content: 'two' },
      ]),
    )
    expect(json.messages).toEqual([
      { role: 'system', content: 'Be terse.\nAnswer in French.' },
      { role: 'user', content: 'one' },
      { role: 'assistant', content: 'un' },
      { role: 'user', content: 'two' },
    ])
  })

  test('user parts: text and image_url (detail kept); other parts and bad URLs refused', () => {
    const { json } = translate(
      chat([
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Compare' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'low' } },
          ],
        },
      ]),
    )
    expect(json.messages[0].content).toEqual([
      { type: 'text', text: 'Compare' },
      { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
      { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'low' } },
    ])
    expectGatewayError(() => translate(chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'ftp://x/y.png' } }] }])), 400, 'messages[0].content[0].image_url.url')
    expectGatewayError(() => translate(chat([{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AA', format: 'wav' } }] }])), 400, 'messages[0].content[0]', 'unsupported_content')
    expectGatewayError(() => translate(chat([{ role: 'function', name: 'f', content: 'x' }])), 400, 'messages[0].role')
  })

  test('assistant tool calls (text beside them is the tool plan) and tool results as text blocks', () => {
    const { json } = translate(
      chat([
        { role: 'user', content: 'Weather in Paris and Rome?' },
        {
          role: 'assistant',
          content: 'I will check both.',
          tool_calls: [
            { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'c2', type: 'function', function: { name: 'get_weather', arguments: '' } },
          ],
        },
        { role: 'tool', tool_call_id: 'c1', content: 'sunny' },
        { role: 'tool', tool_call_id: 'c2', content: [{ type: 'text', text: 'rainy' }] },
        { role: 'assistant', content: '' },
        { role: 'assistant', content: [{ type: 'text', text: 'Paris: sunny. ' }, { type: 'refusal', refusal: 'No more.' }] },
      ]),
    )
    expect(json.messages).toEqual([
      { role: 'user', content: 'Weather in Paris and Rome?' },
      {
        role: 'assistant',
        tool_plan: 'I will check both.',
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          { id: 'c2', type: 'function', function: { name: 'get_weather', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: [{ type: 'text', text: 'sunny' }] },
      { role: 'tool', tool_call_id: 'c2', content: [{ type: 'text', text: 'rainy' }] },
      { role: 'assistant', content: 'Paris: sunny. No more.' },
    ])
    const noPlan = translate(chat([...hi, { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] }]))
    expect(noPlan.json.messages[1]).toEqual({ role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] })
  })

  test('tools in function form, strict → strict_tools, tool_choice mapping', () => {
    const tools = [
      { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: true } },
      { type: 'function', function: { name: 'now' } },
    ]
    const { json } = translate(chat(hi, { tools }))
    expect(json.tools).toEqual([
      { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
      { type: 'function', function: { name: 'now', parameters: { type: 'object', properties: {} } } },
    ])
    expect(json.strict_tools).toBe(true)
    expect(json.tool_choice).toBeUndefined()
    const with_ = (tool_choice: unknown) => translate(chat(hi, { tools, tool_choice })).json
    expect(with_('auto').tool_choice).toBeUndefined()
    expect(with_('required').tool_choice).toBe('REQUIRED')
    expect(with_('none').tool_choice).toBe('NONE')
    // Cohere cannot name a tool: the named one is sent alone, required.
    const named = with_({ type: 'function', function: { name: 'now' } })
    expect(named.tool_choice).toBe('REQUIRED')
    expect(named.tools.map((t: any) => t.function.name)).toEqual(['now'])
    expectGatewayError(() => with_({ type: 'function', function: { name: 'ghost' } }), 400, 'tool_choice')
    expectGatewayError(() => with_({ type: 'allowed_tools' }), 400, 'tool_choice')
    expectGatewayError(() => translate(chat(hi, { tools: [{ type: 'custom', custom: { name: 'x' } }] })), 400, 'tools[0]')
  })

  test('sampling, limits and format: ranges mapped to Cohere’s', () => {
    const { json, dropped } = translate(
      chat(hi, { temperature: 1.6, top_p: 1, seed: 7, frequency_penalty: 1.5, presence_penalty: 0.2, max_tokens: 50, max_completion_tokens: 40, stop: 'END' }),
    )
    expect(json).toMatchObject({ temperature: 1, p: 0.99, seed: 7, frequency_penalty: 1, presence_penalty: 0.2, max_tokens: 40, stop_sequences: ['END'] })
    expect(dropped).toEqual([])
    expect(translate(chat(hi, { top_p: 0, stop: ['a', 'b'] })).json).toMatchObject({ p: 0.01, stop_sequences: ['a', 'b'] })
    // A negative (repetition-encouraging) penalty has no Cohere equivalent.
    const negative = translate(chat(hi, { presence_penalty: -0.5 }))
    expect(negative.dropped).toEqual(['presence_penalty'])
    expect(negative.json.presence_penalty).toBeUndefined()
    expect(translate(chat(hi, { response_format: { type: 'json_object' } })).json.response_format).toEqual({ type: 'json_object' })
    const schema = { type: 'object', properties: { a: { type: 'string' } } }
    expect(translate(chat(hi, { response_format: { type: 'json_schema', json_schema: { name: 's', schema } } })).json.response_format).toEqual({ type: 'json_object', json_schema: schema })
    expect(translate(chat(hi, { response_format: { type: 'text' } })).json.response_format).toBeUndefined()
  })

  test('n > 1 refused; fields Cohere cannot carry dropped and recorded; defaults lose nothing', () => {
    expectGatewayError(() => translate(chat(hi, { n: 3 })), 400, 'n', 'unsupported_parameter')
    const { json, dropped } = translate(
      chat(hi, {
        n: 1,
        logprobs: true,
        top_logprobs: 2,
        logit_bias: { '1': 2 },
        user: 'u',
        parallel_tool_calls: false,
        store: true,
        stream: true,
        stream_options: { include_usage: true },
      }),
    )
    expect(dropped).toEqual(['logprobs', 'top_logprobs', 'logit_bias', 'user', 'parallel_tool_calls', 'store'])
    for (const name of [...dropped, 'n', 'stream_options']) expect(json[name]).toBeUndefined()
    expect(json.stream).toBe(true)
    expect(translate(chat(hi, { logprobs: false, parallel_tool_calls: true, response_format: { type: 'text' } })).dropped).toEqual([])
  })

  test('the input body is not mutated', () => {
    const body = chat(
      [
        { role: 'system', content: 's' },
        { role: 'user', content: [{ type: 'text', text: 'a' }] },
        { role: 'assistant', content: 'p', tool_calls: [{ id: 'x', type: 'function', function: { name: 'f', arguments: '' } }] },
        { role: 'tool', tool_call_id: 'x', content: 'r' },
      ],
      { tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'f' } }, stop: ['s'], seed: 1, user: 'u' },
    )
    const before = structuredClone(body)
    translate(body)
    expect(body).toEqual(before)
  })
})

const response = (over: Record<string, any> = {}) => ({
  id: 'c14c80c3-18eb-4519-9460-6c92edd8cfb4',
  finish_reason: 'COMPLETE',
  message: { role: 'assistant', content: [{ type: 'text', text: 'Hello 你好 👋' }] },
  usage: { billed_units: { input_tokens: 5, output_tokens: 4 }, tokens: { input_tokens: 67, output_tokens: 4 } },
  ...over,
})

describe('chat response translation', () => {
  test('text → chat.completion, usage from billed units (what Cohere charges)', () => {
    const out = parseChatResponse(response() as any, attempt())
    validateSchema('CreateChatCompletionResponse', out)
    expect(out).toMatchObject({
      id: 'chatcmpl-c14c80c3-18eb-4519-9460-6c92edd8cfb4',
      object: 'chat.completion',
      model: 'command-a-03-2025',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello 你好 👋', refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 },
    })
    expect(out.choices[0].message.tool_calls).toBeUndefined()
  })

  test('tool calls, with the tool plan as content; thinking blocks skipped', () => {
    const out = parseChatResponse(
      response({
        finish_reason: 'TOOL_CALL',
        message: {
          role: 'assistant',
          tool_plan: 'I will check.',
          tool_calls: [
            { id: 'get_weather_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'now_2', type: 'function', function: { name: 'now', arguments: '' } },
          ],
        },
      }) as any,
      attempt(),
    )
    validateSchema('CreateChatCompletionResponse', out)
    expect(out.choices[0].finish_reason).toBe('tool_calls')
    expect(out.choices[0].message.content).toBe('I will check.')
    expect(out.choices[0].message.tool_calls).toEqual([
      { id: 'get_weather_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
      { id: 'now_2', type: 'function', function: { name: 'now', arguments: '{}' } },
    ])
    const thinking = parseChatResponse(response({ message: { role: 'assistant', content: [{ type: 'thinking', thinking: 'hmm' }, { type: 'text', text: 'A' }] } }) as any, attempt())
    expect(thinking.choices[0].message.content).toBe('A')
  })

  test('finish reasons; ERROR and TIMEOUT are failures; usage falls back to tokens without billed units', () => {
    const cases: Record<string, string> = { COMPLETE: 'stop', STOP_SEQUENCE: 'stop', MAX_TOKENS: 'length', TOOL_CALL: 'tool_calls', complete: 'stop', max_tokens: 'length', content_blocked: 'content_filter', SOMETHING_NEW: 'stop' }
    for (const [finish_reason, finish] of Object.entries(cases)) expect(parseChatResponse(response({ finish_reason }) as any, attempt()).choices[0].finish_reason).toBe(finish)
    expectGatewayError(() => parseChatResponse(response({ finish_reason: 'ERROR' }) as any, attempt()), 502, null, 'upstream_generation_error')
    expectGatewayError(() => parseChatResponse(response({ finish_reason: 'TIMEOUT' }) as any, attempt()), 504, null, 'upstream_timeout')
    expect(parseChatResponse(response({ usage: { tokens: { input_tokens: 67, output_tokens: 4 } } }) as any, attempt()).usage).toEqual({
      prompt_tokens: 67,
      completion_tokens: 4,
      total_tokens: 71,
    })
    expectGatewayError(() => parseChatResponse({ message: 'oops' } as any, attempt()), 502, null, 'upstream_bad_response')
  })
})

describe('error mapping', () => {
  const h = new Headers()
  test('Cohere’s {message} bodies keep their status; 499 becomes a retryable 502', () => {
    expect(parseError(400, { id: 'x', message: 'invalid request: message must not be empty in a turn' }, h)).toMatchObject({
      status: 400,
      type: 'invalid_request_error',
      message: 'invalid request: message must not be empty in a turn',
    })
    expect(parseError(401, { message: 'invalid api token' }, h)).toMatchObject({ status: 401, type: 'authentication_error' })
    expect(parseError(404, { message: "model 'x' not found" }, h)).toMatchObject({ status: 404 })
    expect(parseError(422, { message: 'unprocessable entity' }, h)).toMatchObject({ status: 422, type: 'invalid_request_error' })
    expect(parseError(429, { message: 'You are past the per minute request limit' }, h)).toMatchObject({ status: 429, type: 'rate_limit_error' })
    expect(parseError(499, { message: 'request cancelled' }, h)).toMatchObject({ status: 502, code: 'upstream_cancelled', message: 'request cancelled' })
    expect(parseError(500, { message: 'internal server error' }, h)).toMatchObject({ status: 500, type: 'server_error' })
    expect(parseError(503, { message: 'service unavailable' }, h)).toMatchObject({ status: 503, type: 'server_error' })
    expect(parseError(502, 'upstream connect error', h).message).toBe('upstream connect error')
    expect(parseError(500, '', h).message).toBe('cohere returned HTTP 500')
  })
})

describe('stream parsing', () => {
  const parse = () => createStreamParser(attempt())
  const ev = (value: unknown) => ({ event: (value as any).type ?? null, data: JSON.stringify(value) })

  function replay(parts: Uint8Array[]): OpenAIChunk[] {
    const p = parse()
    const sse = new SseDecoder()
    const decoder = new TextDecoder()
    const out: OpenAIChunk[] = []
    for (const part of parts) for (const e of sse.push(decoder.decode(part, { stream: true }))) out.push(...(p(e) ?? []))
    for (const e of [...sse.push(decoder.decode()), ...sse.flush()]) out.push(...(p(e) ?? []))
    return out
  }

  function collect(chunks: OpenAIChunk[]) {
    let content = ''
    const calls: { id?: string; name?: string; arguments: string }[] = []
    let finish: string | null = null
    let usage: unknown = null
    for (const c of chunks) {
      if (c.usage) usage = c.usage
      for (const choice of c.choices) {
        content += choice.delta.content ?? ''
        finish = choice.finish_reason ?? finish
        for (const call of choice.delta.tool_calls ?? []) {
          calls[call.index] ??= { id: call.id, name: call.function?.name, arguments: '' }
          calls[call.index]!.arguments += call.function?.arguments ?? ''
        }
      }
    }
    return { content, calls, finish, usage }
  }

  test('the recorded stream: a tool plan as content, one tool call, usage from billed units', () => {
    const chunks = replay([fixture])
    for (const c of chunks) validateSchema('CreateChatCompletionStreamResponse', c)
    expect(chunks[0]!.choices[0].delta).toEqual({ role: 'assistant', content: '' })
    expect(new Set(chunks.map((c) => c.id))).toEqual(new Set(['chatcmpl-5a7d2c1e-8b3f-4e6a-9c0d-1f2e3d4c5b6a']))
    const result = collect(chunks)
    expect(result.content).toBe('I will look up the weather in 東京 (Tokyo) ☀️🌧️ and report back 👋.')
    expect(result.calls).toHaveLength(1)
    expect(result.calls[0]).toMatchObject({ id: 'get_weather_k3v9x2m7p1qz', name: 'get_weather' })
    expect(JSON.parse(result.calls[0]!.arguments)).toEqual({ city: '東京' })
    expect(result.finish).toBe('tool_calls')
    expect(chunks.at(-1)!.choices).toEqual([])
    expect(result.usage).toEqual({ prompt_tokens: 27, completion_tokens: 24, total_tokens: 51 })
  })

  test('the same chunks at every byte split', () => {
    const normalise = (chunks: OpenAIChunk[]) => JSON.stringify(chunks).replace(/"created":\d+/g, '"created":0')
    const reference = normalise(replay([fixture]))
    for (let at = 1; at < fixture.length; at++) {
      if (normalise(replay([fixture.subarray(0, at), fixture.subarray(at)])) !== reference) throw new Error(`split at byte ${at} changed the chunks`)
    }
  })

  test('text content, silent events, finish reasons', () => {
    const p = parse()
    expect(p(ev({ type: 'message-start', id: 'abc', delta: { message: { role: 'assistant' } } }))![0]!.id).toBe('chatcmpl-abc')
    expect(p(ev({ type: 'content-start', index: 0, delta: { message: { content: { type: 'text', text: '' } } } }))).toBeNull()
    expect(p(ev({ type: 'content-start', index: 1, delta: { message: { content: { type: 'thinking', text: 'hmm' } } } }))).toBeNull()
    expect(p(ev({ type: 'content-delta', index: 0, delta: { message: { content: { text: 'Hi' } } } }))![0]!.choices[0].delta).toEqual({ content: 'Hi' })
    for (const type of ['content-end', 'citation-start', 'citation-end', 'tool-call-end', 'debug', 'something-new']) expect(p(ev({ type, index: 0 }))).toBeNull()
    const end = p(ev({ type: 'message-end', delta: { finish_reason: 'MAX_TOKENS', usage: { billed_units: { input_tokens: 2, output_tokens: 3 } } } }))!
    expect(end[0]!.choices[0].finish_reason).toBe('length')
    expect(end[1]).toMatchObject({ choices: [], usage: { prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 } })
  })

  test('message-end with ERROR or TIMEOUT is the mid-stream error; a body that is not JSON throws', () => {
    const p = parse()
    const e = expectGatewayError(() => p(ev({ type: 'message-end', delta: { finish_reason: 'ERROR', error: 'internal server error' } })), 502, null, 'upstream_generation_error')
    expect(e.message).toBe('internal server error')
    expectGatewayError(() => p(ev({ type: 'message-end', delta: { finish_reason: 'TIMEOUT' } })), 504, null, 'upstream_timeout')
    expectGatewayError(() => p({ event: 'content-delta', data: '{"type":' }), 502, null, 'upstream_bad_response')
  })
})

describe('the recorded stream through the real relay', () => {
  test('split at every byte offset: the same output, the same usage', async () => {
    const adapter = (await registeredAdapter(plugin)).chat
    const { provider, model } = attempt().target
    for (const includeUsage of [true, false]) {
      const { text, chunks, outcome } = await replayEverySplit(fixture, { adapter, includeUsage, provider, upstreamModel: model, normalise: ignoreCreated })
      expect(chunks.every((c) => c.model === CLIENT_MODEL)).toBe(true)
      expect(text.includes('"usage"')).toBe(includeUsage)
      expect(outcome.usage).toMatchObject({ prompt_tokens: 27, completion_tokens: 24 })
    }
  }, 60_000)
})

describe('embed translation', () => {
  const embed = (body: Record<string, any>, provider: Record<string, any> = {}) => {
    const ctx = attempt(provider, 'embed-v4.0')
    const upstream = buildEmbedRequest(body, ctx)
    return { upstream, json: JSON.parse(upstream.body as string), dropped: ctx.dropped }
  }

  test('texts, input_type (provider option), float embeddings, dimensions → output_dimension', () => {
    const { upstream, json, dropped } = embed({ model: 'v', input: ['a', 'b'], dimensions: 256, encoding_format: 'base64', user: 'u' })
    expect(upstream.url).toBe('https://api.cohere.com/v2/embed')
    expect(upstream.headers.authorization).toBe('Bearer k')
    expect(json).toEqual({ model: 'embed-v4.0', texts: ['a', 'b'], input_type: 'search_document', embedding_types: ['float'], output_dimension: 256 })
    expect(dropped).toEqual(['user'])
    expect(embed({ model: 'v', input: 'one' }, { options: { embed_input_type: 'search_query' } }).json).toMatchObject({ texts: ['one'], input_type: 'search_query' })
    expect(embed({ model: 'v', input: 'one' }, { options: { embed_input_type: 'bogus' } }).json.input_type).toBe('search_document')
    expectGatewayError(() => embed({ model: 'v', input: [1, 2, 3] }), 400, 'input')
    expectGatewayError(() => embed({ model: 'v', input: [[1, 2]] }), 400, 'input')
  })

  test('response → OpenAI list with usage; a body without floats is a 502', () => {
    const out = parseEmbedResponse(
      { id: 'e', embeddings: { float: [[0.1, 0.2], [0.3, 0.4]] }, texts: ['a', 'b'], meta: { billed_units: { input_tokens: 2 } } },
      attempt({}, 'embed-v4.0'),
    )
    validateSchema('CreateEmbeddingResponse', out)
    expect(out).toEqual({
      object: 'list',
      data: [
        { object: 'embedding', index: 0, embedding: [0.1, 0.2] },
        { object: 'embedding', index: 1, embedding: [0.3, 0.4] },
      ],
      model: 'embed-v4.0',
      usage: { prompt_tokens: 2, total_tokens: 2 },
    })
    expectGatewayError(() => parseEmbedResponse({ id: 'e', embeddings: {} }, attempt()), 502, null, 'upstream_bad_response')
  })
})

describe('fake Cohere upstream', () => {
  let fake: FakeCohere
  beforeAll(async () => {
    fake = await startFakeCohere()
  })
  afterAll(() => fake.stop())

  const post = (p: string, body: unknown, key: string | null = FAKE_API_KEY) =>
    fetch(`${fake.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) }, body: JSON.stringify(body) })

  /** The adapter against the fake, the way the core calls it. */
  async function call(body: Record<string, any>) {
    const ctx = attempt({ baseURL: fake.url, apiKey: FAKE_API_KEY })
    const upstream = buildChatRequest(body, ctx)
    const res = await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })
    if (!res.ok) throw parseError(res.status, await res.json().catch(() => null), res.headers)
    if (!body.stream) return parseChatResponse((await res.json()) as any, ctx)
    const raw = await res.text()
    const p = createStreamParser(ctx)
    const sse = new SseDecoder()
    return { raw, chunks: [...sse.push(raw), ...sse.flush()].flatMap((e) => p(e) ?? []) }
  }

  test('auth errors in Cohere’s words', async () => {
    const none = await post('/v2/chat', { model: 'command-a-03-2025', messages: [{ role: 'user', content: 'hi' }] }, null)
    expect(none.status).toBe(401)
    expect(((await none.json()) as any).message).toBe('no api key supplied')
    const wrong = await post('/v2/chat', { model: 'command-a-03-2025', messages: [{ role: 'user', content: 'hi' }] }, 'nope')
    expect(((await wrong.json()) as any).message).toBe('invalid api token')
  })

  test('request checks: unknown fields, ranges, unknown models, the embed input_type', async () => {
    const base = { model: 'command-a-03-2025', messages: [{ role: 'user', content: 'hi' }] }
    const unknown = await post('/v2/chat', { ...base, stream_options: { include_usage: true } })
    expect(unknown.status).toBe(400)
    expect(((await unknown.json()) as any).message).toBe('invalid request: unknown field: parameter stream_options is not a valid field')
    expect((await post('/v2/chat', { ...base, temperature: 1.5 })).status).toBe(400)
    expect((await post('/v2/chat', { ...base, p: 1 })).status).toBe(400)
    expect((await post('/v2/chat', { ...base, tool_choice: 'AUTO' })).status).toBe(400)
    expect((await post('/v2/chat', { ...base, messages: [{ role: 'user', content: '' }] })).status).toBe(400)
    expect((await post('/v2/chat', { ...base, model: 'ghost' })).status).toBe(404)
    const noType = await post('/v2/embed', { model: 'embed-v4.0', texts: ['a'], embedding_types: ['float'] })
    expect(noType.status).toBe(400)
    expect(((await noType.json()) as any).message).toBe('invalid request: valid input_type must be provided with the provided model')
  })

  test('non-streaming and streaming replies through the adapter, usage from billed units (the template Cohere adds is not billed)', async () => {
    const out: any = await call(chat([{ role: 'system', content: 'Be nice.' }, { role: 'user', content: 'Say hello' }]))
    validateSchema('CreateChatCompletionResponse', out)
    expect(out.choices[0].message.content).toBe(FAKE_REPLY)
    expect(out.usage.prompt_tokens).toBe(fake.usageLog.at(-1)!.prompt_tokens)
    expect(fake.requests.at(-1)!.body.messages[0]).toEqual({ role: 'system', content: 'Be nice.' })

    const { raw, chunks }: any = await call(chat([{ role: 'user', content: 'Say hello' }], { stream: true }))
    const names = [...raw.matchAll(/^event: ([\w-]+)$/gm)].map((m: RegExpMatchArray) => m[1])
    expect(names).toEqual(['message-start', 'content-start', ...Array(6).fill('content-delta'), 'content-end', 'message-end'])
    for (const c of chunks) validateSchema('CreateChatCompletionStreamResponse', c)
    expect(chunks.map((c: any) => c.choices[0]?.delta.content ?? '').join('')).toBe(FAKE_REPLY)
    const usage = chunks.at(-1).usage
    expect(usage).toEqual({ prompt_tokens: fake.usageLog.at(-1)!.prompt_tokens, completion_tokens: 6, total_tokens: fake.usageLog.at(-1)!.prompt_tokens + 6 })
    expect(usage.prompt_tokens).toBeLessThan(TEMPLATE_TOKENS)
  })

  test('tool round trip through the adapter: plan and call, then the answer', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]
    const ask = [{ role: 'user', content: 'What is the weather in Paris?' }]
    const first: any = await call(chat(ask, { tools }))
    expect(first.choices[0].finish_reason).toBe('tool_calls')
    expect(first.choices[0].message.content).toBe(FAKE_TOOL_PLAN)
    const toolCall = first.choices[0].message.tool_calls[0]
    expect(toolCall.id).toStartWith('get_weather_')
    expect(JSON.parse(toolCall.function.arguments)).toEqual({ city: 'Paris' })
    const answer: any = await call(chat([...ask, { role: 'assistant', content: null, tool_calls: [toolCall] }, { role: 'tool', tool_call_id: toolCall.id, content: '{"sky":"clear"}' }], { tools }))
    expect(answer.choices[0].message.content).toBe(FAKE_TOOL_RESULT_REPLY)
  })

  test('stop sequences and max_tokens are honoured', async () => {
    const stopped: any = await call(chat([{ role: 'user', content: 'hi' }], { stop: ['Cohere'] }))
    expect(stopped.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'Hello from fake ' } })
    const cut: any = await call(chat([{ role: 'user', content: 'hi' }], { max_tokens: 2 }))
    expect(cut.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: 'Hello from' } })
  })
})
