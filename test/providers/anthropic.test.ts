import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Anthropic from '@anthropic-ai/sdk'
import type { OpenAIChunk } from '../../src/plugin-sdk/index.ts'
import { SseDecoder } from '../../src/core/sse/decoder.ts'
import plugin from '../../src/providers/anthropic/index.ts'
import { buildRequest } from '../../src/providers/anthropic/request.ts'
import { parseError, parseResponse } from '../../src/providers/anthropic/response.ts'
import { createStreamParser } from '../../src/providers/anthropic/stream.ts'
import type { AnthropicMessage } from '../../src/providers/anthropic/types.ts'
import { attemptFor, expectGatewayError, registeredAdapter } from '../helpers/adapter.ts'
import { FAKE_REPLY, FAKE_TOOL_RESULT_REPLY, startFakeAnthropic, type FakeAnthropic } from '../helpers/fake-anthropic.ts'
import { validateSchema } from '../helpers/openapi.ts'

const fixture = new Uint8Array(await Bun.file(new URL('../fixtures/anthropic-stream.sse', import.meta.url)).arrayBuffer())
const attempt = (body: Record<string, any> = {}, provider: Record<string, any> = {}) =>
  attemptFor({ name: 'anth', type: 'anthropic', baseURL: 'http://x/v1', apiKey: 'k', ...provider }, 'claude-x', body)

/** Builds the upstream request and returns it with its parsed JSON body. */
function translate(body: Record<string, any>, provider: Record<string, any> = {}) {
  const ctx = attempt(body, provider)
  const upstream = buildRequest(body, ctx)
  return { upstream, json: JSON.parse(upstream.body as string), dropped: ctx.dropped }
}

const chat = (messages: any[], extra: Record<string, any> = {}) => ({ model: 'virtual', messages, ...extra })


describe('plugin', () => {
  test('registers a chat-only, translating anthropic provider', async () => {
    const adapter = await registeredAdapter(plugin)
    expect(plugin.name).toBe('provider-anthropic')
    expect(plugin.apiVersion).toBe(1)
    expect(adapter.id).toBe('anthropic')
    expect(adapter.defaultBaseURL).toBe('https://api.anthropic.com/v1')
    expect(adapter.chat?.passthrough).toBe(false)
    expect(adapter.embeddings).toBeUndefined()
    expect(adapter.completions).toBeUndefined()
  })
})

describe('request translation', () => {
  test('URL, headers, model and the required max_tokens', () => {
    const { upstream, json } = translate(chat([{ role: 'user', content: 'hi' }]), { baseURL: 'http://x/v1//' })
    expect(upstream.url).toBe('http://x/v1/messages')
    expect(upstream.headers).toMatchObject({ 'x-api-key': 'k', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' })
    expect(json).toEqual({ model: 'claude-x', max_tokens: 4096, messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }] })
    expect(translate(chat([{ role: 'user', content: 'hi' }]), { baseURL: null }).upstream.url).toBe('https://api.anthropic.com/v1/messages')
  })

  test('max_tokens precedence: max_completion_tokens, max_tokens, provider default, 4096', () => {
    const m = [{ role: 'user', content: 'hi' }]
    expect(translate(chat(m, { max_completion_tokens: 10, max_tokens: 20 })).json.max_tokens).toBe(10)
    expect(translate(chat(m, { max_tokens: 20 })).json.max_tokens).toBe(20)
    expect(translate(chat(m), { options: { default_max_tokens: 300 } }).json.max_tokens).toBe(300)
  })

  test('system and developer messages merge into the top-level system; same-role turns merge', () => {
    const { json } = translate(
      chat([
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'one' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in ' }, { type: 'text', text: 'French.' }] },
        { role: 'user', content: [{ type: 'text', text: 'two' }] },
        { role: 'assistant', content: 'deux' },
        { role: 'assistant', content: [{ type: 'text', text: 'trois' }] },
      ]),
    )
    expect(json.system).toBe('You are terse.\nAnswer in French.')
    expect(json.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'one' }, { type: 'text', text: 'two' }] },
      { role: 'assistant', content: [{ type: 'text', text: 'deux' }, { type: 'text', text: 'trois' }] },
    ])
  })

  test('a tool result with an image or a PDF is a tool_result of blocks; an unsupported part is a 400 naming it', () => {
    const png = 'data:image/png;base64,iVBORw0KGgo='
    const pdf = 'data:application/pdf;base64,JVBERi0xLjQ='
    const call = { role: 'assistant', content: null, tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'screenshot', arguments: '{}' } }] }
    const result = (content: unknown) => translate(chat([{ role: 'user', content: 'Look' }, call, { role: 'tool', tool_call_id: 'toolu_1', content }]))
    const { json } = result([
      { type: 'text', text: 'the screen:' },
      { type: 'image_url', image_url: { url: png } },
      { type: 'file', file: { file_data: pdf } },
    ])
    expect(json.messages[2]).toEqual({
      role: 'user',
      content: [
        {
          type: 'tool_result',
          tool_use_id: 'toolu_1',
          content: [
            { type: 'text', text: 'the screen:' },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
            { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQ=' } },
          ],
        },
      ],
    })
    expect(() => result([{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }])).toThrow(expect.objectContaining({ status: 400, param: 'messages[2].content[0]' }))
  })

  test('assistant tool_calls become tool_use blocks and tool messages one user turn of tool_results', () => {
    const { json } = translate(
      chat([
        { role: 'user', content: 'Weather in Paris and Rome?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'toolu_2', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } },
          ],
        },
        { role: 'tool', tool_call_id: 'toolu_1', content: 'sunny' },
        { role: 'tool', tool_call_id: 'toolu_2', content: [{ type: 'text', text: 'rainy' }] },
        { role: 'user', content: 'Thanks' },
      ]),
    )
    expect(json.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'Weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 'toolu_1', name: 'get_weather', input: { city: 'Paris' } },
          { type: 'tool_use', id: 'toolu_2', name: 'get_weather', input: { city: 'Rome' } },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'toolu_1', content: 'sunny' },
          { type: 'tool_result', tool_use_id: 'toolu_2', content: 'rainy' },
          { type: 'text', text: 'Thanks' },
        ],
      },
    ])
  })

  test('a conversation with no user or assistant turn (a system prompt alone, an empty message) is refused before it is sent', () => {
    expectGatewayError(() => translate(chat([{ role: 'system', content: 'Be brief.' }])), 400, 'messages')
    expectGatewayError(() => translate(chat([{ role: 'developer', content: 'Be brief.' }, { role: 'user', content: '' }])), 400, 'messages')
  })

  test('tool call arguments that are not a JSON object are refused', () => {
    const bad = (args: string) =>
      chat([{ role: 'user', content: 'x' }, { role: 'assistant', tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: args } }] }])
    expectGatewayError(() => translate(bad('{"city":')), 400, 'messages[1].tool_calls')
    expectGatewayError(() => translate(bad('[1]')), 400, 'messages[1].tool_calls')
    expect(translate(bad('')).json.messages[1].content[0].input).toEqual({})
  })

  test('images: data URL → base64 source, http URL → url source', () => {
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
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
    ])
    const bad = chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'ftp://x/y.png' } }] }])
    expectGatewayError(() => translate(bad), 400, 'messages[0].content[0].image_url.url')
    // A PDF sent inline (chat's file part, the Responses door's input_file) is a document block; other files are refused.
    const pdf = (mime: string) => chat([{ role: 'user', content: [{ type: 'text', text: 'Summarise' }, { type: 'file', file: { filename: 'a.pdf', file_data: `data:${mime};base64,JVBERi0x` } }] }])
    expect(translate(pdf('application/pdf')).json.messages[0].content[1]).toEqual({ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0x' } })
    expectGatewayError(() => translate(pdf('application/zip')), 400, 'messages[0].content[1].file')
    const audio = chat([{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }] }])
    expectGatewayError(() => translate(audio), 400, 'messages[0].content[0]')
  })

  test('tools and tool_choice mapping, parallel_tool_calls:false', () => {
    const tools = [
      { type: 'function', function: { name: 'get_weather', description: 'Weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
      { type: 'function', function: { name: 'now' } },
    ]
    const m = [{ role: 'user', content: 'hi' }]
    const { json } = translate(chat(m, { tools }))
    expect(json.tools).toEqual([
      { name: 'get_weather', description: 'Weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } },
      { name: 'now', input_schema: { type: 'object', properties: {} } },
    ])
    expect(json.tool_choice).toBeUndefined()
    const choice = (tool_choice: unknown, extra: Record<string, any> = {}) => translate(chat(m, { tools, tool_choice, ...extra })).json.tool_choice
    expect(choice('auto')).toEqual({ type: 'auto' })
    expect(choice('none')).toEqual({ type: 'none' })
    expect(choice('required')).toEqual({ type: 'any' })
    expect(choice({ type: 'function', function: { name: 'now' } })).toEqual({ type: 'tool', name: 'now' })
    expect(choice('required', { parallel_tool_calls: false })).toEqual({ type: 'any', disable_parallel_tool_use: true })
    expect(choice(undefined, { parallel_tool_calls: false })).toEqual({ type: 'auto', disable_parallel_tool_use: true })
    expect(choice(undefined, { parallel_tool_calls: true })).toBeUndefined()
  })

  test('sampling, stop, user and stream', () => {
    const m = [{ role: 'user', content: 'hi' }]
    const { json } = translate(chat(m, { temperature: 1.7, top_p: 0.9, stop: 'END', user: 'u-42', stream: true, stream_options: { include_usage: true } }))
    expect(json).toMatchObject({ temperature: 1, top_p: 0.9, stop_sequences: ['END'], metadata: { user_id: 'u-42' }, stream: true })
    expect(json.stream_options).toBeUndefined()
    expect(translate(chat(m, { stop: ['a', 'b'], temperature: 0.3 })).json).toMatchObject({ stop_sequences: ['a', 'b'], temperature: 0.3 })
  })

  test('n > 1 is refused; n = 1 passes', () => {
    const m = [{ role: 'user', content: 'hi' }]
    expectGatewayError(() => translate(chat(m, { n: 2 })), 400, 'n', 'unsupported_parameter')
    expect(translate(chat(m, { n: 1 })).json.n).toBeUndefined()
  })

  test('fields Anthropic cannot carry are dropped and recorded, never silently', () => {
    const body = chat([{ role: 'user', content: 'hi' }], {
      logprobs: true,
      top_logprobs: 3,
      logit_bias: { '50256': -100 },
      presence_penalty: 0.5,
      frequency_penalty: 0.5,
      seed: 7,
      response_format: { type: 'json_object' },
      store: true,
      n: 1,
      stream_options: { include_usage: true },
    })
    const { json, dropped } = translate(body)
    expect(dropped).toEqual(['logprobs', 'top_logprobs', 'logit_bias', 'presence_penalty', 'frequency_penalty', 'seed', 'response_format', 'store'])
    for (const name of dropped) expect(json[name]).toBeUndefined()
    // The default response format loses nothing.
    expect(translate(chat([{ role: 'user', content: 'hi' }], { response_format: { type: 'text' } })).dropped).toEqual([])
  })

  test('the input body is not mutated', () => {
    const body = chat(
      [
        { role: 'system', content: 'sys' },
        { role: 'user', content: [{ type: 'text', text: 'a' }] },
        { role: 'user', content: 'b' },
        { role: 'assistant', tool_calls: [{ id: 'x', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'x', content: 'r' },
      ],
      { stop: ['s'], tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }], parallel_tool_calls: false, seed: 1 },
    )
    const before = structuredClone(body)
    translate(body)
    expect(body).toEqual(before)
  })
})

const message = (over: Record<string, any> = {}) => ({
  id: 'msg_01ABC',
  type: 'message',
  role: 'assistant',
  model: 'claude-x',
  content: [{ type: 'text', text: 'Hello 你好 👋' }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: { input_tokens: 10, output_tokens: 5, cache_creation_input_tokens: 2, cache_read_input_tokens: 3 },
  ...over,
})

describe('response translation', () => {
  test('text message → chat.completion with usage including cache tokens', () => {
    const out = parseResponse(message() as any, attempt())
    validateSchema('CreateChatCompletionResponse', out)
    expect(out).toMatchObject({
      id: 'chatcmpl-01ABC',
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello 你好 👋', refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 15, completion_tokens: 5, total_tokens: 20, prompt_tokens_details: { cached_tokens: 3, cache_write_tokens: 2 } },
    })
    expect(out.choices[0].message.tool_calls).toBeUndefined()
    expect(Math.abs(out.created - Date.now() / 1000)).toBeLessThan(5)
  })

  test('tool_use blocks → tool_calls; thinking blocks are skipped', () => {
    const out = parseResponse(
      message({
        content: [
          { type: 'thinking', thinking: 'hmm', signature: 'sig' },
          { type: 'text', text: 'Checking.' },
          { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } },
          { type: 'tool_use', id: 'toolu_02', name: 'now', input: {} },
        ],
        stop_reason: 'tool_use',
      }) as any,
      attempt(),
    )
    validateSchema('CreateChatCompletionResponse', out)
    expect(out.choices[0].finish_reason).toBe('tool_calls')
    expect(out.choices[0].message.content).toBe('Checking.')
    expect(out.choices[0].message.tool_calls).toEqual([
      { id: 'toolu_01', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
      { id: 'toolu_02', type: 'function', function: { name: 'now', arguments: '{}' } },
    ])
    const toolOnly = parseResponse(message({ content: [{ type: 'tool_use', id: 't', name: 'n', input: {} }], stop_reason: 'tool_use' }) as any, attempt())
    expect(toolOnly.choices[0].message.content).toBeNull()
    validateSchema('CreateChatCompletionResponse', toolOnly)
  })

  test('finish reasons', () => {
    const cases: Record<string, string> = {
      end_turn: 'stop',
      stop_sequence: 'stop',
      pause_turn: 'stop',
      max_tokens: 'length',
      model_context_window_exceeded: 'length',
      tool_use: 'tool_calls',
      refusal: 'content_filter',
    }
    for (const [stop_reason, finish] of Object.entries(cases)) {
      const out = parseResponse(message({ stop_reason }) as any, attempt())
      expect(out.choices[0].finish_reason).toBe(finish)
      validateSchema('CreateChatCompletionResponse', out)
    }
  })
})

describe('error mapping', () => {
  const envelope = (type: string, msg: string) => ({ type: 'error', error: { type, message: msg }, request_id: 'req_011' })

  test('529 overloaded → 503', () => {
    const e = parseError(529, envelope('overloaded_error', 'Overloaded'), new Headers())
    expect(e).toMatchObject({ status: 503, message: 'Overloaded', type: 'server_error', code: 'overloaded_error' })
  })

  test('4xx keep their status and get the OpenAI type', () => {
    expect(parseError(401, envelope('authentication_error', 'invalid x-api-key'), new Headers())).toMatchObject({
      status: 401,
      type: 'authentication_error',
      code: 'authentication_error',
      message: 'invalid x-api-key',
    })
    expect(parseError(400, envelope('invalid_request_error', 'max_tokens: Field required'), new Headers())).toMatchObject({ status: 400, type: 'invalid_request_error' })
    expect(parseError(429, envelope('rate_limit_error', 'slow down'), new Headers())).toMatchObject({ status: 429, type: 'rate_limit_error' })
    expect(parseError(404, envelope('not_found_error', 'model: claude-x'), new Headers())).toMatchObject({ status: 404, type: 'invalid_request_error' })
    expect(parseError(500, envelope('api_error', 'Internal'), new Headers())).toMatchObject({ status: 500, type: 'server_error' })
  })

  test('a body that is not an Anthropic envelope still yields a message', () => {
    const e = parseError(502, '<html>Bad gateway</html>', new Headers())
    expect(e.status).toBe(502)
    expect(e.message).toBe('<html>Bad gateway</html>')
    expect(parseError(500, null, new Headers()).message).toContain('500')
  })
})

describe('stream parser', () => {
  const expected = {
    content: 'Let me check the weather in 東京 (Tokyo) ☀️🌧️ for you — 少々お待ちください。',
    toolCalls: [{ id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6', name: 'get_weather', arguments: '{"location": "東京", "unit": "celsius"}' }],
    usage: { prompt_tokens: 600, completion_tokens: 89, total_tokens: 689, prompt_tokens_details: { cached_tokens: 128 } },
  }

  /** Decodes the byte parts like the relay does and runs every event through a fresh parser. */
  function replay(parts: Uint8Array[]): OpenAIChunk[] {
    const text = new TextDecoder()
    const sse = new SseDecoder()
    const events = parts.flatMap((p) => sse.push(text.decode(p, { stream: true })))
    events.push(...sse.push(text.decode()), ...sse.flush())
    const parse = createStreamParser(attempt())
    return events.flatMap((e) => parse(e) ?? [])
  }

  function collect(chunks: OpenAIChunk[]) {
    let content = ''
    const toolCalls: { id: string; name: string; arguments: string }[] = []
    let finish: string | null = null
    let usage: unknown = null
    for (const chunk of chunks) {
      if (chunk.usage) usage = chunk.usage
      for (const choice of chunk.choices) {
        content += choice.delta.content ?? ''
        finish = choice.finish_reason ?? finish
        for (const call of choice.delta.tool_calls ?? []) {
          toolCalls[call.index] ??= { id: call.id, name: call.function.name, arguments: '' }
          toolCalls[call.index]!.arguments += call.function.arguments ?? ''
        }
      }
    }
    return { content, toolCalls, finish, usage }
  }

  test('the recorded stream translates to valid OpenAI chunks', () => {
    const chunks = replay([fixture])
    for (const chunk of chunks) validateSchema('CreateChatCompletionStreamResponse', chunk)
    expect(chunks[0]!.choices[0]).toEqual({ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })
    expect(chunks[0]!.id).toBe('chatcmpl-01XFDUDYJgAACzvnptvVoYEL')
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1)
    const last = chunks.at(-1)!
    expect(last.choices).toEqual([])
    expect(last.usage).toEqual(expected.usage)
    const finishing = chunks.filter((c) => c.choices[0]?.finish_reason)
    expect(finishing.map((c) => c.choices[0].finish_reason)).toEqual(['tool_calls'])
    expect(collect(chunks)).toEqual({ ...expected, finish: 'tool_calls' })
  })

  test('the same result at every byte split', () => {
    const reference = JSON.stringify(collect(replay([fixture])))
    for (let at = 0; at <= fixture.length; at++) {
      const result = collect(replay([fixture.subarray(0, at), fixture.subarray(at)]))
      if (JSON.stringify(result) !== reference) throw new Error(`split at byte ${at} gave ${JSON.stringify(result)}`)
    }
    expect(JSON.parse(reference)).toEqual({ ...expected, finish: 'tool_calls' })
  })

  test('ping and content_block_stop produce nothing; an error event throws', () => {
    const parse = createStreamParser(attempt())
    expect(parse({ event: 'ping', data: '{"type":"ping"}' })).toBeNull()
    expect(parse({ event: 'content_block_stop', data: '{"type":"content_block_stop","index":0}' })).toBeNull()
    const overloaded = { event: 'error', data: '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}' }
    expect(() => parse(overloaded)).toThrow('Overloaded')
    expectGatewayError(() => parse(overloaded), 503, undefined, 'overloaded_error')
    expectGatewayError(() => parse({ event: 'error', data: '{"type":"error","error":{"type":"api_error","message":"boom"}}' }), 502, undefined, 'api_error')
  })
})

describe('fake Anthropic upstream', () => {
  let fake: FakeAnthropic
  beforeAll(async () => {
    fake = await startFakeAnthropic()
  })
  afterAll(() => fake.stop())

  /** The adapter against the fake, the way the core calls it. */
  async function call(body: Record<string, any>) {
    const ctx = attempt(body, { baseURL: fake.url, apiKey: 'sk-ant-test' })
    const upstream = buildRequest(body, ctx)
    const response = await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })
    if (!response.ok) throw parseError(response.status, await response.json().catch(() => null), response.headers)
    if (!body.stream) return parseResponse((await response.json()) as AnthropicMessage, ctx)
    const parse = createStreamParser(ctx)
    const sse = new SseDecoder()
    const decoder = new TextDecoder()
    const chunks: OpenAIChunk[] = []
    let raw = ''
    for await (const part of response.body!) {
      const text = decoder.decode(part, { stream: true })
      raw += text
      for (const event of sse.push(text)) chunks.push(...(parse(event) ?? []))
    }
    return { chunks, raw }
  }

  const weatherTool = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }]

  test('non-streaming text reply through the adapter', async () => {
    const out: any = await call(chat([{ role: 'system', content: 'Be nice.' }, { role: 'user', content: 'Say hello' }]))
    validateSchema('CreateChatCompletionResponse', out)
    expect(out.choices[0].message.content).toBe(FAKE_REPLY)
    expect(out.usage).toEqual({ prompt_tokens: 5, completion_tokens: 6, total_tokens: 11, prompt_tokens_details: { cached_tokens: 0 } })
    const seen = fake.requests.at(-1)!
    expect(seen.headers['x-api-key']).toBe('sk-ant-test')
    expect(seen.body.system).toBe('Be nice.')
  })

  test('streaming: the exact Anthropic event sequence, translated', async () => {
    const { chunks, raw }: any = await call(chat([{ role: 'user', content: 'Say hello' }], { stream: true }))
    const names = [...raw.matchAll(/^event: (\w+)$/gm)].map((m: RegExpMatchArray) => m[1])
    expect(names).toEqual(['message_start', 'content_block_start', 'ping', ...Array(6).fill('content_block_delta'), 'content_block_stop', 'message_delta', 'message_stop'])
    for (const chunk of chunks) validateSchema('CreateChatCompletionStreamResponse', chunk)
    expect(chunks.map((c: any) => c.choices[0]?.delta.content ?? '').join('')).toBe(FAKE_REPLY)
    expect(chunks.at(-1).usage).toMatchObject({ completion_tokens: 6 })
  })

  test('tool round trip: tool_use, then a tool_result answer', async () => {
    const first: any = await call(chat([{ role: 'user', content: "What's the weather in Paris?" }], { tools: weatherTool }))
    expect(first.choices[0].finish_reason).toBe('tool_calls')
    const toolCall = first.choices[0].message.tool_calls[0]
    expect(toolCall.function).toEqual({ name: 'get_weather', arguments: '{"city":"Paris"}' })
    expect(toolCall.id).toStartWith('toolu_')

    const streamed: any = await call(chat([{ role: 'user', content: "What's the weather in Paris?" }], { tools: weatherTool, stream: true }))
    const args = streamed.chunks.flatMap((c: any) => c.choices[0]?.delta.tool_calls ?? []).map((t: any) => t.function.arguments).join('')
    expect(args).toBe('{"city":"Paris"}')

    const second: any = await call(
      chat([
        { role: 'user', content: "What's the weather in Paris?" },
        { role: 'assistant', content: null, tool_calls: [toolCall] },
        { role: 'tool', tool_call_id: toolCall.id, content: '{"sky":"clear"}' },
      ], { tools: weatherTool }),
    )
    expect(second.choices[0].message.content).toBe(FAKE_TOOL_RESULT_REPLY)
  })

  test('errors: 529 → 503, 429 with retry-after, 401 for a wrong key', async () => {
    await expect(call(chat([{ role: 'user', content: 'overloaded' }]))).rejects.toMatchObject({ status: 503, code: 'overloaded_error' })
    await expect(call(chat([{ role: 'user', content: 'ratelimit' }]))).rejects.toMatchObject({ status: 429, type: 'rate_limit_error' })
    const limited = await fetch(`${fake.url}/messages`, {
      method: 'POST',
      headers: { 'x-api-key': 'sk-ant-test', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'ratelimit' }] }),
    })
    expect(limited.headers.get('retry-after')).toBe('3')
    const ctx = attempt({}, { baseURL: fake.url, apiKey: 'wrong' })
    const upstream = buildRequest(chat([{ role: 'user', content: 'hi' }]), ctx)
    const res = await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })
    expect(parseError(res.status, await res.json(), res.headers)).toMatchObject({ status: 401, type: 'authentication_error' })
  })

  test('the fake enforces anthropic-version and max_tokens like the real API', async () => {
    const post = (headers: Record<string, string>, body: unknown) => fetch(`${fake.url}/messages`, { method: 'POST', headers: { 'x-api-key': 'sk-ant-test', ...headers }, body: JSON.stringify(body) })
    const noVersion = await post({}, { model: 'm', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })
    expect(noVersion.status).toBe(400)
    expect(((await noVersion.json()) as any).error.type).toBe('invalid_request_error')
    const noMax = await post({ 'anthropic-version': '2023-06-01' }, { model: 'm', messages: [{ role: 'user', content: 'hi' }] })
    expect(noMax.status).toBe(400)
    expect(((await noMax.json()) as any).error.message).toContain('max_tokens')
  })

  test('mid-stream error event becomes a thrown 503', async () => {
    await expect(call(chat([{ role: 'user', content: 'midstream-error' }], { stream: true }))).rejects.toMatchObject({ status: 503, code: 'overloaded_error' })
  })

  test('the official Anthropic SDK (Bearer auth, API 2026-10-21) accepts the fake', async () => {
    const client = new Anthropic({ apiKey: 'sk-ant-test', baseURL: fake.url.replace(/\/v1$/, ''), maxRetries: 0 })
    const reply = await client.messages.create({ model: 'claude-x', max_tokens: 64, messages: [{ role: 'user', content: 'hello' }] })
    expect(reply.content[0]).toEqual({ type: 'text', text: FAKE_REPLY } as any)
    const stream = client.messages.stream({ model: 'claude-x', max_tokens: 64, messages: [{ role: 'user', content: 'hello' }] })
    expect((await stream.finalMessage()).content[0]).toMatchObject({ type: 'text', text: FAKE_REPLY })
    expect(fake.requests.at(-1)!.headers.authorization).toBe('Bearer sk-ant-test')
  })
})
