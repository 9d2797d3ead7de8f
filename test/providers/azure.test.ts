import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SseDecoder } from '../../src/core/sse/decoder.ts'
import type { OpenAIChunk } from '../../src/plugin-sdk/index.ts'
import plugin from '../../src/providers/azure/index.ts'
import { buildRequest, resourceEndpoint } from '../../src/providers/azure/request.ts'
import { parseChatResponse, parseCompletionResponse, parseError } from '../../src/providers/azure/response.ts'
import { createStreamParser } from '../../src/providers/azure/stream.ts'
import { attemptFor, expectGatewayError, registeredAdapter } from '../helpers/adapter.ts'
import { FAKE_API_KEY, FAKE_REPLY, startFakeAzure, type FakeAzure } from '../helpers/fake-azure.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { CLIENT_MODEL, fixtureBytes, replayEverySplit } from '../helpers/relay.ts'

const fixture = await fixtureBytes('azure-stream.sse')

const attempt = (provider: Record<string, any> = {}, model = 'gpt4o-prod') =>
  attemptFor({ name: 'az', type: 'azure', baseURL: 'https://res.openai.azure.com', apiKey: 'k', ...provider }, model)

function translate(endpoint: 'chat' | 'completions' | 'embeddings', body: Record<string, any>, provider: Record<string, any> = {}, model?: string) {
  const ctx = attempt(provider, model)
  const upstream = buildRequest(endpoint, body, ctx)
  return { upstream, json: JSON.parse(upstream.body as string), dropped: ctx.dropped }
}

const chat = (extra: Record<string, any> = {}) => ({ model: 'virtual', messages: [{ role: 'user', content: 'hi' }], ...extra })


const SAFE = { filtered: false, severity: 'safe' }
const VERDICT = { hate: SAFE, self_harm: SAFE, sexual: SAFE, violence: SAFE }

describe('plugin', () => {
  test('registers azure with parsed chat and completions and passthrough embeddings', async () => {
    const adapter = await registeredAdapter(plugin)
    expect(plugin.name).toBe('provider-azure')
    expect(adapter.id).toBe('azure')
    expect(adapter.defaultBaseURL).toBeUndefined()
    expect(adapter.chat?.passthrough).toBe(false)
    expect(adapter.chat?.createStreamParser).toBeDefined()
    expect(adapter.completions?.passthrough).toBe(false)
    expect(adapter.embeddings?.passthrough).toBe(true)
  })
})

describe('request translation', () => {
  test('deployment URL with api-version, api-key header, no model in the body', () => {
    const { upstream, json } = translate('chat', chat({ temperature: 0.2 }))
    expect(upstream.url).toBe('https://res.openai.azure.com/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21')
    expect(upstream.headers).toEqual({ 'content-type': 'application/json', accept: 'application/json', 'api-key': 'k' })
    expect(json).toEqual({ messages: [{ role: 'user', content: 'hi' }], temperature: 0.2 })
    expect(translate('completions', { model: 'v', prompt: 'x' }).upstream.url).toContain('/openai/deployments/gpt4o-prod/completions?api-version=2024-10-21')
    expect(translate('embeddings', { model: 'v', input: 'x' }, {}, 'embed prod').upstream.url).toBe(
      'https://res.openai.azure.com/openai/deployments/embed%20prod/embeddings?api-version=2024-10-21',
    )
  })

  test('options.api_version: a dated version in the query, v1 on the OpenAI-shaped surface with the deployment as model', () => {
    expect(translate('chat', chat(), { options: { api_version: '2025-04-01-preview' } }).upstream.url).toEndWith('?api-version=2025-04-01-preview')
    const v1 = translate('chat', chat(), { options: { api_version: 'v1' } })
    expect(v1.upstream.url).toBe('https://res.openai.azure.com/openai/v1/chat/completions')
    expect(v1.json.model).toBe('gpt4o-prod')
    expect(translate('embeddings', { model: 'v', input: 'x' }, { options: { api_version: 'v1' } }).upstream.url).toBe('https://res.openai.azure.com/openai/v1/embeddings')
  })

  test('the resource endpoint is read whatever form was pasted; none is a configuration error', () => {
    const endpoint = (baseURL: string | null) => resourceEndpoint(attempt({ baseURL }).target.provider)
    expect(endpoint('https://res.openai.azure.com/')).toBe('https://res.openai.azure.com')
    expect(endpoint('https://res.openai.azure.com/openai')).toBe('https://res.openai.azure.com')
    expect(endpoint('https://res.openai.azure.com/openai/v1/')).toBe('https://res.openai.azure.com')
    expectGatewayError(() => translate('chat', chat(), { baseURL: null }), 500, undefined, 'provider_misconfigured')
  })

  test('streams always ask for usage (the parser needs no byte passthrough)', () => {
    const { upstream, json } = translate('chat', chat({ stream: true }))
    expect(json.stream_options).toEqual({ include_usage: true })
    expect(upstream.headers.accept).toBe('text/event-stream')
    expect(translate('completions', { model: 'v', prompt: 'x', stream: true, stream_options: { include_usage: false } }).json.stream_options).toEqual({ include_usage: true })
  })

  test('a dated GA version drops the fields its spec lacks, and says so', () => {
    const { json, dropped } = translate(
      'chat',
      chat({ store: true, metadata: { a: 'b' }, reasoning_effort: 'low', seed: 1, logprobs: true, n: 2, response_format: { type: 'json_object' }, max_completion_tokens: 9 }),
    )
    expect(dropped.sort()).toEqual(['metadata', 'reasoning_effort', 'store'])
    expect(json).toMatchObject({ seed: 1, logprobs: true, n: 2, response_format: { type: 'json_object' }, max_completion_tokens: 9 })
    expect(json.store).toBeUndefined()
    const completions = translate('completions', { model: 'v', prompt: 'x', suffix: 's', best_of: 2, service_tier: 'auto' })
    expect(completions.dropped).toEqual(['service_tier'])
    expect(completions.json).toEqual({ prompt: 'x', suffix: 's', best_of: 2 })
    // Embeddings accept additional properties.
    expect(translate('embeddings', { model: 'v', input: 'x', dimensions: 8, encoding_format: 'base64', user: 'u' }).dropped).toEqual([])
  })

  test('preview and v1 versions track OpenAI: nothing dropped', () => {
    for (const api_version of ['2025-04-01-preview', 'v1']) {
      const { json, dropped } = translate('chat', chat({ store: true, reasoning_effort: 'low' }), { options: { api_version } })
      expect(dropped).toEqual([])
      expect(json).toMatchObject({ store: true, reasoning_effort: 'low' })
    }
  })

  test('versions before 2024-09-01: max_completion_tokens becomes max_tokens; stream_options and parallel_tool_calls go', () => {
    const { json, dropped } = translate('chat', chat({ stream: true, stream_options: { include_usage: true }, max_completion_tokens: 50, parallel_tool_calls: false }), {
      options: { api_version: '2024-06-01' },
    })
    expect(json.max_tokens).toBe(50)
    expect(json.max_completion_tokens).toBeUndefined()
    expect(json.stream_options).toBeUndefined()
    expect(json.parallel_tool_calls).toBeUndefined()
    expect(dropped.sort()).toEqual(['parallel_tool_calls', 'stream_options'])
  })

  test('the input body is not mutated', () => {
    const body = chat({ stream: true, store: true, stream_options: { include_usage: false } })
    const before = structuredClone(body)
    translate('chat', body)
    translate('chat', body, { options: { api_version: '2024-06-01' } })
    expect(body).toEqual(before)
  })
})

describe('response translation', () => {
  const response = (over: Record<string, any> = {}, choice: Record<string, any> = {}) => ({
    choices: [
      {
        content_filter_results: VERDICT,
        finish_reason: 'stop',
        index: 0,
        logprobs: null,
        message: { annotations: [], content: 'Hi 你好 👋', refusal: null, role: 'assistant' },
        ...choice,
      },
    ],
    created: 1760538412,
    id: 'chatcmpl-x',
    model: 'gpt-4o-2024-11-20',
    object: 'chat.completion',
    prompt_filter_results: [{ prompt_index: 0, content_filter_results: VERDICT }],
    system_fingerprint: 'fp_1',
    usage: { completion_tokens: 3, prompt_tokens: 5, total_tokens: 8 },
    ...over,
  })

  test('annotations are removed, the rest is OpenAI’s own', () => {
    const out = parseChatResponse(response(), attempt())
    validateSchema('CreateChatCompletionResponse', out)
    expect(out.prompt_filter_results).toBeUndefined()
    expect(out.choices[0].content_filter_results).toBeUndefined()
    expect(out.choices[0].message.content).toBe('Hi 你好 👋')
    expect(out.usage).toEqual({ completion_tokens: 3, prompt_tokens: 5, total_tokens: 8 })
  })

  test('a withheld completion and an older api-version’s missing fields are filled in', () => {
    const filtered = parseChatResponse(response({}, { finish_reason: 'content_filter', message: { role: 'assistant' } }), attempt())
    validateSchema('CreateChatCompletionResponse', filtered)
    expect(filtered.choices[0]).toMatchObject({ finish_reason: 'content_filter', message: { role: 'assistant', content: null, refusal: null } })
    const old = parseChatResponse(response({}, { logprobs: undefined, message: { role: 'assistant', content: 'x' } }), attempt())
    validateSchema('CreateChatCompletionResponse', old)
  })

  test('text completions the same way; a body without choices is a 502', () => {
    const out = parseCompletionResponse(
      { id: 'cmpl-1', object: 'text_completion', created: 1, model: 'm', prompt_filter_results: [], choices: [{ content_filter_results: VERDICT, finish_reason: 'stop', index: 0, logprobs: null, text: 'hey' }] },
      attempt(),
    )
    validateSchema('CreateCompletionResponse', out)
    expect(out.choices[0].content_filter_results).toBeUndefined()
    expectGatewayError(() => parseChatResponse({ error: 'x' }, attempt()), 502, undefined, 'upstream_bad_response')
    expectGatewayError(() => parseCompletionResponse(null, attempt()), 502, undefined, 'upstream_bad_response')
  })
})

describe('error mapping', () => {
  const headers = (h: Record<string, string> = {}) => new Headers(h)

  test('Azure envelopes: string codes kept, content filter with its param', () => {
    const filter = parseError(
      400,
      { error: { message: 'The response was filtered…', type: null, param: 'prompt', code: 'content_filter', status: 400, innererror: { code: 'ResponsibleAIPolicyViolation' } } },
      headers(),
    )
    expect(filter).toMatchObject({ status: 400, code: 'content_filter', param: 'prompt', type: 'invalid_request_error' })
    expect(parseError(404, { error: { code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist.' } }, headers())).toMatchObject({
      status: 404,
      code: 'DeploymentNotFound',
    })
    expect(parseError(401, { error: { code: '401', message: 'Access denied due to invalid subscription key' } }, headers())).toMatchObject({ status: 401, code: '401' })
    expect(parseError(500, { error: { message: 'The server had an error', type: 'server_error', param: null, code: null } }, headers())).toMatchObject({
      status: 500,
      type: 'server_error',
      code: null,
    })
    expect(parseError(502, '<html>Bad gateway</html>', headers()).message).toBe('<html>Bad gateway</html>')
  })

  test('429 keeps retry-after-ms for the SDKs (the core adds retry-after)', () => {
    const limited = parseError(429, { error: { code: '429', message: 'Please retry after 6 seconds.' } }, headers({ 'retry-after': '6', 'retry-after-ms': '6000' }))
    expect(limited).toMatchObject({ status: 429, type: 'rate_limit_error', code: '429' })
    expect(limited.headers['retry-after-ms']).toBe('6000')
  })
})

describe('stream parsing', () => {
  const parse = (kind: 'chat' | 'completions' = 'chat') => createStreamParser(kind)(attempt())
  const event = (value: unknown) => ({ event: null, data: typeof value === 'string' ? value : JSON.stringify(value) })
  const identity = { created: 7, id: 'chatcmpl-1', model: 'gpt-4o', object: 'chat.completion.chunk' }

  test('the prompt verdict chunk, [DONE] and verdict-only chunks produce nothing', () => {
    const p = parse()
    expect(p(event({ choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: [{ prompt_index: 0, content_filter_results: VERDICT }] }))).toBeNull()
    expect(p(event('[DONE]'))).toBeNull()
    expect(p(event({ choices: [{ content_filter_offsets: { check_offset: 1 }, content_filter_results: VERDICT, finish_reason: null, index: 0 }], created: 0, id: '', model: '', object: '', usage: null }))).toBeNull()
  })

  test('chunks lose their annotations and null usage', () => {
    const [chunk] = parse()(event({ choices: [{ content_filter_results: VERDICT, delta: { content: 'Hi' }, finish_reason: null, index: 0, logprobs: null }], ...identity, usage: null }))!
    expect(chunk).toEqual({ choices: [{ delta: { content: 'Hi' }, finish_reason: null, index: 0, logprobs: null }], ...identity })
    validateSchema('CreateChatCompletionStreamResponse', chunk)
  })

  test('a verdict that ends the choice becomes a final chunk of the stream', () => {
    const p = parse()
    p(event({ choices: [{ delta: { role: 'assistant', content: '' }, finish_reason: null, index: 0 }], ...identity }))
    const [chunk] = p(event({ choices: [{ content_filter_results: { violence: { filtered: true, severity: 'medium' } }, finish_reason: 'content_filter', index: 0 }], created: 0, id: '', model: '', object: '' }))!
    expect(chunk).toEqual({ choices: [{ delta: {}, finish_reason: 'content_filter', index: 0 }], ...identity })
    validateSchema('CreateChatCompletionStreamResponse', chunk)
  })

  test('legacy completion chunks: text choices, a verdict ending one gets empty text', () => {
    const p = parse('completions')
    const id = { created: 3, id: 'cmpl-1', model: 'gpt-35-turbo-instruct', object: 'text_completion' }
    expect(p(event({ choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: [] }))).toBeNull()
    expect(p(event({ choices: [{ content_filter_results: VERDICT, finish_reason: null, index: 0, logprobs: null, text: 'Hi' }], ...id }))).toEqual([
      { choices: [{ finish_reason: null, index: 0, logprobs: null, text: 'Hi' }], ...id },
    ])
    expect(p(event({ choices: [{ finish_reason: 'content_filter', index: 0 }], created: 0, id: '', model: '', object: '' }))).toEqual([
      { choices: [{ finish_reason: 'content_filter', index: 0, text: '' }], ...id },
    ])
  })

  test('an error event throws; so does a body that is not JSON', () => {
    const p = parse()
    const e = expectGatewayError(() => p(event({ error: { message: 'The server had an error', type: 'server_error', param: null, code: null } })), 502, undefined, 'upstream_error')
    expect(e.message).toBe('The server had an error')
    expectGatewayError(() => p(event({ error: { code: 'content_filter', message: 'filtered' } })), 502, undefined, 'content_filter')
    expectGatewayError(() => p(event('{"choices":')), 502, undefined, 'upstream_bad_response')
  })

  /** Feeds `parts` through the decoder and a fresh parser, collecting the OpenAI chunks. */
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
    let args = ''
    let finish: string | null = null
    let usage: unknown = null
    for (const c of chunks) {
      if (c.usage) usage = c.usage
      for (const choice of c.choices) {
        content += choice.delta.content ?? ''
        for (const call of choice.delta.tool_calls ?? []) args += call.function?.arguments ?? ''
        finish = choice.finish_reason ?? finish
      }
    }
    return { content, args, finish, usage }
  }

  test('the recorded stream: valid OpenAI chunks, content, tool call, usage', () => {
    const chunks = replay([fixture])
    for (const c of chunks) validateSchema('CreateChatCompletionStreamResponse', c)
    expect(chunks.some((c) => c.id === '')).toBe(false)
    expect(JSON.stringify(chunks)).not.toContain('content_filter_results')
    const result = collect(chunks)
    expect(result.content).toBe('Let me check the weather in 東京 (Tokyo) ☀️🌧️ for you 👋')
    expect(JSON.parse(result.args)).toEqual({ city: '東京' })
    expect(result.finish).toBe('tool_calls')
    expect(result.usage).toMatchObject({ prompt_tokens: 84, completion_tokens: 31, total_tokens: 115 })
  })

  test('the same chunks at every byte split', () => {
    const reference = JSON.stringify(replay([fixture]))
    for (let at = 1; at < fixture.length; at++) {
      const split = JSON.stringify(replay([fixture.subarray(0, at), fixture.subarray(at)]))
      if (split !== reference) throw new Error(`split at byte ${at} changed the chunks`)
    }
  })
})

describe('the recorded stream through the real relay', () => {
  test('split at every byte offset: the same bytes to the client, the same usage', async () => {
    const adapter = (await registeredAdapter(plugin)).chat
    const { provider, model } = attempt().target
    for (const includeUsage of [true, false]) {
      const { text, chunks, outcome } = await replayEverySplit(fixture, { adapter, includeUsage, provider, upstreamModel: model })
      expect(chunks.every((c) => c.model === CLIENT_MODEL)).toBe(true)
      expect(text.includes('"usage"')).toBe(includeUsage)
      expect(outcome.usage).toMatchObject({ prompt_tokens: 84, completion_tokens: 31 })
    }
  }, 60_000)
})

describe('fake Azure upstream', () => {
  let fake: FakeAzure
  beforeAll(async () => {
    fake = await startFakeAzure({ asyncFilter: true })
  })
  afterAll(() => fake.stop())

  const post = (p: string, body: unknown, headers: Record<string, string> = { 'api-key': FAKE_API_KEY }) =>
    fetch(`${fake.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  const hi = { messages: [{ role: 'user', content: 'hi' }] }

  test('routing and api-version: 404 without it, 400 for an unknown one, deployments and operations checked', async () => {
    const noVersion = await post('/openai/deployments/gpt4o-prod/chat/completions', hi)
    expect(noVersion.status).toBe(404)
    expect(await noVersion.json()).toEqual({ error: { code: '404', message: 'Resource not found' } })
    const unknown = await post('/openai/deployments/gpt4o-prod/chat/completions?api-version=2099-01-01', hi)
    expect(unknown.status).toBe(400)
    expect(await unknown.json()).toEqual({ error: { code: 'BadRequest', message: 'API version not supported' } })
    const missing = await post('/openai/deployments/nope/chat/completions?api-version=2024-10-21', hi)
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as any).error.code).toBe('DeploymentNotFound')
    const wrongOp = await post('/openai/deployments/embed-prod/chat/completions?api-version=2024-10-21', hi)
    expect(wrongOp.status).toBe(400)
    expect(((await wrongOp.json()) as any).error.code).toBe('OperationNotSupported')
    expect((await post('/openai/v1/chat/completions?api-version=2024-10-21', { ...hi, model: 'gpt4o-prod' })).status).toBe(400)
  })

  test('auth: api-key or Bearer; anything else is Azure’s 401', async () => {
    const url = '/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21'
    expect((await post(url, hi, { authorization: `Bearer ${FAKE_API_KEY}` })).status).toBe(200)
    const denied = await post(url, hi, { 'api-key': 'nope' })
    expect(denied.status).toBe(401)
    expect(((await denied.json()) as any).error).toMatchObject({ code: '401', message: expect.stringContaining('Access denied') })
  })

  test('a GA version refuses fields it does not know; a preview version takes them', async () => {
    const refused = await post('/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21', { ...hi, store: true })
    expect(refused.status).toBe(400)
    expect(((await refused.json()) as any).error.message).toBe('Unrecognized request argument supplied: store')
    const old = await post('/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01', { ...hi, max_completion_tokens: 5 })
    expect(((await old.json()) as any).error.message).toBe('Unrecognized request argument supplied: max_completion_tokens')
    expect((await post('/openai/deployments/gpt4o-prod/chat/completions?api-version=2025-04-01-preview', { ...hi, store: true })).status).toBe(200)
  })

  test('tool results must answer tool calls, as OpenAI requires', async () => {
    const res = await post('/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21', {
      messages: [{ role: 'user', content: 'x' }, { role: 'tool', tool_call_id: 'call_1', content: 'r' }],
    })
    expect(res.status).toBe(400)
    expect(((await res.json()) as any).error.message).toContain("must be a response to a preceeding message with 'tool_calls'")
  })

  test('the raw stream: a prompt verdict first, asynchronous verdict-only chunks, through the adapter valid and complete', async () => {
    const ctx = attempt({ baseURL: fake.url, apiKey: FAKE_API_KEY })
    const upstream = buildRequest('chat', { model: 'v', stream: true, messages: [{ role: 'user', content: 'Hello' }] }, ctx)
    const res = await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })
    const raw = await res.text()
    const events = raw.split('\n\n').filter(Boolean)
    expect(JSON.parse(events[0]!.slice(6))).toMatchObject({ choices: [], id: '', object: '', created: 0, prompt_filter_results: [{ prompt_index: 0 }] })
    expect(raw).toContain('"content_filter_offsets"')
    const p = createStreamParser('chat')(ctx)
    const sse = new SseDecoder()
    const chunks = [...sse.push(raw), ...sse.flush()].flatMap((e) => p(e) ?? [])
    for (const c of chunks) validateSchema('CreateChatCompletionStreamResponse', c)
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe(FAKE_REPLY)
    expect(chunks.at(-1)!.usage).toEqual(expect.objectContaining({ prompt_tokens: fake.usageLog.at(-1)!.prompt_tokens }))
  })

  test('filtered output with the asynchronous filter: the verdict ends the stream as content_filter', async () => {
    const ctx = attempt({ baseURL: fake.url, apiKey: FAKE_API_KEY })
    const upstream = buildRequest('chat', { model: 'v', stream: true, messages: [{ role: 'user', content: 'filtered-output' }] }, ctx)
    const raw = await (await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })).text()
    const p = createStreamParser('chat')(ctx)
    const sse = new SseDecoder()
    const chunks = [...sse.push(raw), ...sse.flush()].flatMap((e) => p(e) ?? [])
    for (const c of chunks) validateSchema('CreateChatCompletionStreamResponse', c)
    const finishing = chunks.filter((c) => c.choices[0]?.finish_reason)
    expect(finishing.map((c) => c.choices[0].finish_reason)).toEqual(['content_filter'])
    expect(finishing[0]!.id).toBe(chunks[0]!.id)
  })
})
