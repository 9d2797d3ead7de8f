import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import type { OpenAIChunk } from '../../src/plugin-sdk/index.ts'
import { SseDecoder } from '../../src/core/sse/decoder.ts'
import plugin from '../../src/providers/gemini/index.ts'
import { buildEmbeddingsRequest, buildRequest, guessMimeType } from '../../src/providers/gemini/request.ts'
import { parseEmbeddingsResponse, parseError, parseResponse } from '../../src/providers/gemini/response.ts'
import { createStreamParser } from '../../src/providers/gemini/stream.ts'
import { thoughtSignatureOf, toolCallId } from '../../src/providers/gemini/tool-ids.ts'
import { attemptFor, expectGatewayError, registeredAdapter } from '../helpers/adapter.ts'
import { FAKE_API_KEY, FAKE_REPLY, FAKE_TOOL_RESULT_REPLY, startFakeGemini, type FakeGemini } from '../helpers/fake-gemini.ts'
import { validateEmbeddingResponse, validateSchema } from '../helpers/openapi.ts'

const fixture = new Uint8Array(await Bun.file(new URL('../fixtures/gemini-stream.sse', import.meta.url)).arrayBuffer())
const FIXTURE_SIGNATURE = 'pU3KGCUwux1tEyze1iN7LtkeP3IfyxlxF0SU1kk8nVw0YL4xIB5p/tqg7ui5mX9cfCmZ/a/lkyU81lSvTfo='
const attempt = (body: Record<string, any> = {}, provider: Record<string, any> = {}, model = 'gemini-2.5-flash') =>
  attemptFor({ name: 'gem', type: 'gemini', baseURL: 'http://x/v1beta', apiKey: 'k', ...provider }, model, body)

/** Builds the upstream request and returns it with its parsed JSON body. */
function translate(body: Record<string, any>, provider: Record<string, any> = {}, model?: string) {
  const ctx = attempt(body, provider, model)
  const upstream = buildRequest(body, ctx)
  return { upstream, json: JSON.parse(upstream.body as string), dropped: ctx.dropped }
}

const chat = (messages: any[], extra: Record<string, any> = {}) => ({ model: 'virtual', messages, ...extra })
const hi = [{ role: 'user', content: 'hi' }]


describe('plugin', () => {
  test('registers a translating gemini provider with chat and embeddings, no legacy completions', async () => {
    const adapter = await registeredAdapter(plugin)
    expect(plugin.name).toBe('provider-gemini')
    expect(plugin.apiVersion).toBe(1)
    expect(adapter.id).toBe('gemini')
    expect(adapter.defaultBaseURL).toBe('https://generativelanguage.googleapis.com/v1beta')
    expect(adapter.chat?.passthrough).toBe(false)
    expect(adapter.embeddings?.passthrough).toBe(false)
    expect(typeof adapter.chat?.createStreamParser).toBe('function')
    expect(adapter.completions).toBeUndefined()
  })
})

describe('request translation', () => {
  test('URL per method, x-goog-api-key, no model or stream field in the body', () => {
    const { upstream, json } = translate(chat(hi), { baseURL: 'http://x/v1beta//' })
    expect(upstream.url).toBe('http://x/v1beta/models/gemini-2.5-flash:generateContent')
    expect(upstream.headers).toEqual({ 'content-type': 'application/json', 'x-goog-api-key': 'k' })
    expect(json).toEqual({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] })
    const streamed = translate(chat(hi, { stream: true, stream_options: { include_usage: true } }))
    expect(streamed.upstream.url).toBe('http://x/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse')
    expect(streamed.upstream.headers.accept).toBe('text/event-stream')
    expect(streamed.json).toEqual({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }] })
    expect(streamed.dropped).toEqual([])
    expect(translate(chat(hi), { baseURL: null }).upstream.url).toBe('https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent')
    expect(translate(chat(hi), {}, 'tunedModels/my-tune').upstream.url).toBe('http://x/v1beta/tunedModels/my-tune:generateContent')
    expect(translate(chat(hi), { apiKey: null }).upstream.headers['x-goog-api-key']).toBeUndefined()
  })

  test('system and developer messages → systemInstruction; roles user/model; same-role turns merged', () => {
    const { json } = translate(
      chat([
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'one' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in ' }, { type: 'text', text: 'French.' }] },
        { role: 'user', content: [{ type: 'text', text: 'two' }] },
        { role: 'assistant', content: 'deux' },
        { role: 'assistant', content: [{ type: 'text', text: 'trois' }, { type: 'refusal', refusal: 'non' }] },
        { role: 'assistant', content: '' },
        { role: 'user', content: 'four' },
      ]),
    )
    expect(json.systemInstruction).toEqual({ parts: [{ text: 'You are terse.\nAnswer in French.' }] })
    expect(json.contents).toEqual([
      { role: 'user', parts: [{ text: 'one' }, { text: 'two' }] },
      { role: 'model', parts: [{ text: 'deux' }, { text: 'trois' }, { text: 'non' }] },
      { role: 'user', parts: [{ text: 'four' }] },
    ])
  })

  test('a conversation with only system messages is refused before it reaches Gemini', () => {
    expectGatewayError(() => translate(chat([{ role: 'system', content: 'x' }])), 400, 'messages')
    expectGatewayError(() => translate(chat([{ role: 'function', name: 'f', content: 'x' }])), 400, 'messages[0].role')
  })

  test('tool calls → functionCall parts; tool results → functionResponse parts named by the call they answer', () => {
    const { json } = translate(
      chat([
        { role: 'user', content: 'Weather in Paris and Rome?' },
        {
          role: 'assistant',
          content: 'Checking.',
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'call_2', type: 'function', function: { name: 'get_time', arguments: '' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: '{"sky":"sunny","temp":21}' },
        { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: '12:00' }] },
        { role: 'user', content: 'Thanks' },
      ]),
    )
    expect(json.contents).toEqual([
      { role: 'user', parts: [{ text: 'Weather in Paris and Rome?' }] },
      {
        role: 'model',
        parts: [{ text: 'Checking.' }, { functionCall: { name: 'get_weather', args: { city: 'Paris' } } }, { functionCall: { name: 'get_time', args: {} } }],
      },
      {
        role: 'user',
        parts: [
          { functionResponse: { name: 'get_weather', response: { sky: 'sunny', temp: 21 } } },
          // Not a JSON object: wrapped under Gemini's documented `output` key.
          { functionResponse: { name: 'get_time', response: { output: '12:00' } } },
          { text: 'Thanks' },
        ],
      },
    ])
  })

  test('a tool result for an unknown call id, or arguments that are not an object, are refused', () => {
    expectGatewayError(() => translate(chat([...hi, { role: 'tool', tool_call_id: 'nope', content: 'x' }])), 400, 'messages[1].tool_call_id', 'invalid_tool_call_id')
    const bad = (args: string) => chat([...hi, { role: 'assistant', tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: args } }] }])
    expectGatewayError(() => translate(bad('{"city":')), 400, 'messages[1].tool_calls', 'invalid_tool_arguments')
    expectGatewayError(() => translate(bad('"text"')), 400, 'messages[1].tool_calls')
  })

  test('a thought signature carried in a tool call id goes back on its functionCall part', () => {
    const id = toolCallId({ functionCall: { name: 'get_weather', args: {} }, thoughtSignature: FIXTURE_SIGNATURE })
    expect(id).toMatch(/^call_[A-Za-z0-9]{24}__ts__[A-Za-z0-9_-]+$/)
    expect(thoughtSignatureOf(id)).toBe(FIXTURE_SIGNATURE)
    expect(thoughtSignatureOf('call_abc')).toBeUndefined()
    const { json } = translate(
      chat([...hi, { role: 'assistant', tool_calls: [{ id, type: 'function', function: { name: 'get_weather', arguments: '{}' } }] }, { role: 'tool', tool_call_id: id, content: 'ok' }]),
    )
    expect(json.contents[1].parts[0]).toEqual({ functionCall: { name: 'get_weather', args: {} }, thoughtSignature: FIXTURE_SIGNATURE })
    expect(json.contents[2].parts[0].functionResponse.name).toBe('get_weather')
  })

  test('images: data URL → inlineData, http(s) URL → fileData with a guessed mime type; audio and inline files', () => {
    const { json } = translate(
      chat([
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Compare' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.WEBP?size=2', detail: 'high' } },
            { type: 'image_url', image_url: { url: 'https://example.com/render' } },
            { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } },
            { type: 'file', file: { filename: 'a.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' } },
          ],
        },
      ]),
    )
    expect(json.contents[0].parts).toEqual([
      { text: 'Compare' },
      { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } },
      { fileData: { mimeType: 'image/webp', fileUri: 'https://example.com/cat.WEBP?size=2' } },
      { fileData: { mimeType: 'image/jpeg', fileUri: 'https://example.com/render' } },
      { inlineData: { mimeType: 'audio/wav', data: 'UklGRg==' } },
      { inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } },
    ])
    expect(guessMimeType('http://h/a.png')).toBe('image/png')
    expect(guessMimeType('http://h/a.jpg')).toBe('image/jpeg')
    expect(guessMimeType('http://h/a.gif#x')).toBe('image/gif')
    const image = (url: string) => chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }])
    expectGatewayError(() => translate(image('ftp://x/y.png')), 400, 'messages[0].content[0].image_url.url', 'invalid_image_url')
    expectGatewayError(() => translate(chat([{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-1' } }] }])), 400, 'messages[0].content[0].file', 'unsupported_content')
  })

  test('tools → one Tool of functionDeclarations with the JSON Schema as parametersJsonSchema', () => {
    const parameters = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false }
    const { json } = translate(
      chat(hi, {
        tools: [
          { type: 'function', function: { name: 'get_weather', description: 'Weather by city', parameters, strict: true } },
          { type: 'function', function: { name: 'now' } },
        ],
      }),
    )
    expect(json.tools).toEqual([{ functionDeclarations: [{ name: 'get_weather', description: 'Weather by city', parametersJsonSchema: parameters }, { name: 'now' }] }])
    expect(json.toolConfig).toBeUndefined()
    expectGatewayError(() => translate(chat(hi, { tools: [{ type: 'custom', custom: { name: 'x' } }] })), 400, 'tools[0]')
  })

  test('tool_choice → functionCallingConfig', () => {
    const tools = [{ type: 'function', function: { name: 'a' } }, { type: 'function', function: { name: 'b' } }]
    const config = (tool_choice: unknown) => translate(chat(hi, { tools, tool_choice })).json.toolConfig
    expect(config('auto')).toEqual({ functionCallingConfig: { mode: 'AUTO' } })
    expect(config('none')).toEqual({ functionCallingConfig: { mode: 'NONE' } })
    expect(config('required')).toEqual({ functionCallingConfig: { mode: 'ANY' } })
    expect(config({ type: 'function', function: { name: 'b' } })).toEqual({ functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['b'] } })
    const allowed = (mode: string) => ({ type: 'allowed_tools', allowed_tools: { mode, tools: [{ type: 'function', function: { name: 'a' } }] } })
    expect(config(allowed('required'))).toEqual({ functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['a'] } })
    expect(config(allowed('auto'))).toEqual({ functionCallingConfig: { mode: 'VALIDATED', allowedFunctionNames: ['a'] } })
    expectGatewayError(() => config('sometimes'), 400, 'tool_choice', 'unsupported_value')
    // Without tools there is nothing to steer, and Gemini refuses a calling config without declarations.
    expect(translate(chat(hi, { tool_choice: 'none' })).json.toolConfig).toBeUndefined()
  })

  test('generationConfig from the sampling fields', () => {
    const { json, dropped } = translate(
      chat(hi, {
        max_tokens: 20,
        max_completion_tokens: 10,
        stop: ['END', 'STOP'],
        temperature: 1.5,
        top_p: 0.9,
        n: 3,
        seed: 42,
        presence_penalty: 0.5,
        frequency_penalty: -0.5,
        response_format: { type: 'json_schema', json_schema: { name: 'r', strict: true, schema: { type: 'object', properties: { a: { type: 'integer' } } } } },
      }),
    )
    expect(json.generationConfig).toEqual({
      maxOutputTokens: 10,
      stopSequences: ['END', 'STOP'],
      temperature: 1.5,
      topP: 0.9,
      candidateCount: 3,
      seed: 42,
      presencePenalty: 0.5,
      frequencyPenalty: -0.5,
      responseMimeType: 'application/json',
      responseJsonSchema: { type: 'object', properties: { a: { type: 'integer' } } },
    })
    expect(dropped).toEqual([])
    expect(translate(chat(hi, { max_tokens: 7, stop: 'x', n: 1 })).json.generationConfig).toEqual({ maxOutputTokens: 7, stopSequences: ['x'] })
    expect(translate(chat(hi, { response_format: { type: 'json_object' } })).json.generationConfig).toEqual({ responseMimeType: 'application/json' })
    expect(translate(chat(hi, { response_format: { type: 'text' } })).json.generationConfig).toBeUndefined()
    expectGatewayError(() => translate(chat(hi, { response_format: { type: 'grammar' } })), 400, 'response_format.type')
  })

  test('fields Gemini cannot carry are dropped and signalled', () => {
    const { json, dropped } = translate(
      chat(hi, { logprobs: true, top_logprobs: 2, user: 'u1', logit_bias: { 1: 2 }, parallel_tool_calls: false, reasoning_effort: 'low', metadata: { a: 'b' }, store: null }),
    )
    expect(dropped.sort()).toEqual(['logit_bias', 'logprobs', 'metadata', 'parallel_tool_calls', 'reasoning_effort', 'top_logprobs', 'user'])
    expect(Object.keys(json)).toEqual(['contents'])
    expect(translate(chat(hi, { parallel_tool_calls: true })).dropped).toEqual([])
  })

  test('the OpenAI body is never mutated', () => {
    const body = chat(
      [
        { role: 'system', content: 's' },
        { role: 'user', content: [{ type: 'text', text: 'a' }] },
        { role: 'assistant', tool_calls: [{ id: 'x', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'x', content: 'r' },
      ],
      { stop: ['s'], tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }], seed: 1 },
    )
    const before = structuredClone(body)
    translate(body)
    expect(body).toEqual(before)
  })
})

const response = (over: Record<string, any> = {}) => ({
  candidates: [{ content: { parts: [{ text: 'Hello ' }, { text: '你好 👋' }], role: 'model' }, finishReason: 'STOP', index: 0 }],
  usageMetadata: { promptTokenCount: 10, candidatesTokenCount: 5, totalTokenCount: 15, promptTokensDetails: [{ modality: 'TEXT', tokenCount: 10 }] },
  modelVersion: 'gemini-2.5-flash',
  responseId: 'abcDEF123',
  ...over,
})

describe('response translation', () => {
  test('text candidate → chat.completion with usage', () => {
    const out = parseResponse(response() as any, attempt())
    validateSchema('CreateChatCompletionResponse', out)
    expect(out).toMatchObject({
      id: 'chatcmpl-abcDEF123',
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello 你好 👋', refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    })
    expect(out.usage.prompt_tokens_details).toBeUndefined()
    expect(out.choices[0].message.tool_calls).toBeUndefined()
    expect(Math.abs(out.created - Date.now() / 1000)).toBeLessThan(5)
    expect(parseResponse(response({ responseId: undefined }) as any, attempt()).id).toMatch(/^chatcmpl-[A-Za-z0-9]{24}$/)
  })

  test('usage: thoughts count as completion (and reasoning) tokens, cached and tool-use prompt tokens as prompt', () => {
    const out = parseResponse(
      response({ usageMetadata: { promptTokenCount: 100, candidatesTokenCount: 20, thoughtsTokenCount: 30, cachedContentTokenCount: 64, toolUsePromptTokenCount: 7, totalTokenCount: 157 } }) as any,
      attempt(),
    )
    validateSchema('CreateChatCompletionResponse', out)
    expect(out.usage).toEqual({
      prompt_tokens: 107,
      completion_tokens: 50,
      total_tokens: 157,
      prompt_tokens_details: { cached_tokens: 64 },
      completion_tokens_details: { reasoning_tokens: 30 },
    })
  })

  test('functionCall parts → tool_calls: generated call_ ids (unique) unless the part has one; thoughts skipped', () => {
    const out = parseResponse(
      response({
        candidates: [
          {
            content: {
              role: 'model',
              parts: [
                { text: 'Let me think…', thought: true },
                { functionCall: { name: 'get_weather', args: { city: 'Paris' } }, thoughtSignature: 'c2ln' },
                { functionCall: { name: 'get_weather', args: { city: 'Rome' } } },
                { functionCall: { id: 'fc-7', name: 'now' } },
              ],
            },
            finishReason: 'STOP',
          },
        ],
      }) as any,
      attempt(),
    )
    validateSchema('CreateChatCompletionResponse', out)
    const message = out.choices[0].message
    expect(out.choices[0].finish_reason).toBe('tool_calls')
    expect(message.content).toBeNull()
    expect(message.tool_calls.map((c: any) => c.function)).toEqual([
      { name: 'get_weather', arguments: '{"city":"Paris"}' },
      { name: 'get_weather', arguments: '{"city":"Rome"}' },
      { name: 'now', arguments: '{}' },
    ])
    const [a, b, c] = message.tool_calls.map((t: any) => t.id)
    expect(a).toMatch(/^call_[A-Za-z0-9]{24}__ts__c2ln$/)
    expect(thoughtSignatureOf(a)).toBe('c2ln')
    expect(b).toMatch(/^call_[A-Za-z0-9]{24}$/)
    expect(a.slice(0, 29)).not.toBe(b)
    expect(c).toBe('fc-7')
  })

  test('finish reasons', () => {
    const cases: Record<string, string> = {
      STOP: 'stop',
      MAX_TOKENS: 'length',
      SAFETY: 'content_filter',
      RECITATION: 'content_filter',
      BLOCKLIST: 'content_filter',
      PROHIBITED_CONTENT: 'content_filter',
      SPII: 'content_filter',
      IMAGE_SAFETY: 'content_filter',
      LANGUAGE: 'stop',
      OTHER: 'stop',
      MALFORMED_FUNCTION_CALL: 'stop',
      SOMETHING_NEW: 'stop',
    }
    for (const [finishReason, finish] of Object.entries(cases)) {
      const out = parseResponse(response({ candidates: [{ content: { parts: [{ text: 'x' }], role: 'model' }, finishReason }] }) as any, attempt())
      expect([finishReason, out.choices[0].finish_reason]).toEqual([finishReason, finish])
      validateSchema('CreateChatCompletionResponse', out)
    }
    // A candidate blocked before writing anything has no content at all.
    const blocked = parseResponse(response({ candidates: [{ finishReason: 'SAFETY', index: 0 }] }) as any, attempt())
    expect(blocked.choices[0]).toEqual({ index: 0, message: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: 'content_filter' })
  })

  test('several candidates → choices by index', () => {
    const out = parseResponse(
      response({
        candidates: [
          { content: { parts: [{ text: 'second' }], role: 'model' }, finishReason: 'MAX_TOKENS', index: 1 },
          { content: { parts: [{ text: 'first' }], role: 'model' }, finishReason: 'STOP' },
        ],
      }) as any,
      attempt(),
    )
    validateSchema('CreateChatCompletionResponse', out)
    expect(out.choices.map((c: any) => [c.index, c.message.content, c.finish_reason])).toEqual([
      [0, 'first', 'stop'],
      [1, 'second', 'length'],
    ])
  })

  test('a blocked prompt (no candidates, promptFeedback.blockReason) → one filtered, empty choice', () => {
    const out = parseResponse({ promptFeedback: { blockReason: 'PROHIBITED_CONTENT' }, usageMetadata: { promptTokenCount: 9, totalTokenCount: 9 }, responseId: 'r1' } as any, attempt())
    validateSchema('CreateChatCompletionResponse', out)
    expect(out.choices).toEqual([{ index: 0, message: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: 'content_filter' }])
    expect(out.usage).toEqual({ prompt_tokens: 9, completion_tokens: 0, total_tokens: 9 })
  })

  test('a body without candidates or block reason is a bad upstream response', () => {
    expectGatewayError(() => parseResponse({ usageMetadata: {} } as any, attempt()), 502, undefined, 'upstream_bad_response')
    expectGatewayError(() => parseResponse([] as any, attempt()), 502, undefined, 'upstream_bad_response')
  })
})

describe('error mapping', () => {
  const envelope = (code: number, status: string, message: string, details?: unknown[]) => ({ error: { code, message, status, ...(details ? { details } : {}) } })

  test('status and message kept; type from the status; code from Google’s status name', () => {
    expect(parseError(400, envelope(400, 'INVALID_ARGUMENT', 'Request contains an invalid argument.'), new Headers())).toMatchObject({
      status: 400,
      message: 'Request contains an invalid argument.',
      type: 'invalid_request_error',
      code: 'invalid_argument',
    })
    expect(parseError(404, envelope(404, 'NOT_FOUND', 'models/x is not found'), new Headers())).toMatchObject({ status: 404, type: 'invalid_request_error', code: 'not_found' })
    expect(parseError(403, envelope(403, 'PERMISSION_DENIED', 'denied'), new Headers())).toMatchObject({ status: 403, type: 'permission_error', code: 'permission_denied' })
    expect(parseError(500, envelope(500, 'INTERNAL', 'boom'), new Headers())).toMatchObject({ status: 500, type: 'server_error', code: 'internal' })
    expect(parseError(503, envelope(503, 'UNAVAILABLE', 'The model is overloaded.'), new Headers())).toMatchObject({ status: 503, type: 'server_error', code: 'unavailable' })
  })

  test('429: RetryInfo.retryDelay becomes retry-after (whole seconds, rounded up)', () => {
    const retry = (delay: string) => [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: delay }]
    const e = parseError(429, envelope(429, 'RESOURCE_EXHAUSTED', 'quota', retry('3s')), new Headers())
    expect(e).toMatchObject({ status: 429, type: 'rate_limit_error', code: 'resource_exhausted' })
    expect(e.headers).toEqual({ 'retry-after': '3' })
    expect(parseError(429, envelope(429, 'RESOURCE_EXHAUSTED', 'q', retry('41.53s')), new Headers()).headers).toEqual({ 'retry-after': '42' })
    expect(parseError(429, envelope(429, 'RESOURCE_EXHAUSTED', 'q'), new Headers()).headers).toEqual({})
  })

  test('a bad API key (Google: 400 API_KEY_INVALID) is an authentication failure, so the core reports 502', () => {
    const details = [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID', domain: 'googleapis.com' }]
    expect(parseError(400, envelope(400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.', details), new Headers())).toMatchObject({
      status: 401,
      type: 'authentication_error',
      code: 'invalid_api_key',
    })
    const expired = [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_EXPIRED' }]
    expect(parseError(400, envelope(400, 'INVALID_ARGUMENT', 'API key expired. Please renew the API key.', expired), new Headers()).status).toBe(401)
  })

  test('arrays (no alt=sse), HTML pages and empty bodies still yield a message', () => {
    expect(parseError(500, [envelope(500, 'INTERNAL', 'inner')], new Headers())).toMatchObject({ status: 500, message: 'inner', code: 'internal' })
    const html = parseError(404, '<!DOCTYPE html><title>Error 404 (Not Found)!!1</title>', new Headers())
    expect(html).toMatchObject({ status: 404, code: null })
    expect(html.message).toContain('404')
    expect(parseError(502, null, new Headers()).message).toBe('gemini returned HTTP 502')
  })
})

/** Decodes the byte parts like the relay does and runs every event through a fresh parser. */
function replay(parts: Uint8Array[], body: Record<string, any> = {}): OpenAIChunk[] {
  const text = new TextDecoder()
  const sse = new SseDecoder()
  const events = parts.flatMap((p) => sse.push(text.decode(p, { stream: true })))
  events.push(...sse.push(text.decode()), ...sse.flush())
  const parse = createStreamParser(attempt(body))
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

const sseEvent = (data: unknown) => ({ event: null, data: JSON.stringify(data) })

describe('stream parser', () => {
  const expected = {
    content: 'Let me check the weather in 東京 for you ☀️🌧️ — 少々お待ちください。',
    usage: { prompt_tokens: 71, completion_tokens: 135, total_tokens: 206, prompt_tokens_details: { cached_tokens: 32 }, completion_tokens_details: { reasoning_tokens: 96 } },
  }

  test('the recorded stream translates to valid OpenAI chunks', () => {
    const chunks = replay([fixture])
    for (const chunk of chunks) validateSchema('CreateChatCompletionStreamResponse', chunk)
    expect(chunks[0]!.choices[0]).toEqual({ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null })
    expect(chunks[0]!.id).toBe('chatcmpl-qYbzaKnAIbKXz7IP7Yi0oQU')
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1)
    // Earlier events carry running usage: exactly one usage chunk, the last, from the final counts.
    expect(chunks.filter((c) => c.usage).length).toBe(1)
    const last = chunks.at(-1)!
    expect(last.choices).toEqual([])
    expect(last.usage).toEqual(expected.usage)
    expect(chunks.flatMap((c) => c.choices.map((x: any) => x.finish_reason)).filter(Boolean)).toEqual(['tool_calls'])
    // The closing empty text part produces no chunk.
    expect(chunks.some((c) => c.choices[0]?.delta.content === '' && !c.choices[0]?.delta.role)).toBe(false)
    const result = collect(chunks)
    expect(result.content).toBe(expected.content)
    expect(result.toolCalls).toHaveLength(1)
    expect(result.toolCalls[0]!.name).toBe('get_weather')
    expect(JSON.parse(result.toolCalls[0]!.arguments)).toEqual({ location: '東京', unit: 'celsius' })
    expect(thoughtSignatureOf(result.toolCalls[0]!.id)).toBe(FIXTURE_SIGNATURE)
  })

  test('the same result at every byte split (ids aside)', () => {
    const strip = (r: ReturnType<typeof collect>) => JSON.stringify({ ...r, toolCalls: r.toolCalls.map((t) => ({ ...t, id: thoughtSignatureOf(t.id) })) })
    const reference = strip(collect(replay([fixture])))
    for (let at = 0; at <= fixture.length; at++) {
      const result = strip(collect(replay([fixture.subarray(0, at), fixture.subarray(at)])))
      if (result !== reference) throw new Error(`split at byte ${at} gave ${result}`)
    }
    expect(JSON.parse(reference)).toMatchObject({ content: expected.content, finish: 'tool_calls', usage: expected.usage })
  })

  test('an error event throws: 503 and 429 kept, anything else a 502', () => {
    const parse = createStreamParser(attempt())
    expect(parse(sseEvent({ candidates: [{ content: { parts: [{ text: 'Hi' }], role: 'model' } }] }))!.length).toBe(2)
    const error = (code: number, status: string) => sseEvent({ error: { code, message: `${status} happened`, status } })
    expect(() => parse(error(500, 'INTERNAL'))).toThrow('INTERNAL happened')
    expectGatewayError(() => parse(error(500, 'INTERNAL')), 502, undefined, 'internal')
    expectGatewayError(() => parse(error(503, 'UNAVAILABLE')), 503, undefined, 'unavailable')
    expectGatewayError(() => parse(error(429, 'RESOURCE_EXHAUSTED')), 429, undefined, 'resource_exhausted')
    expectGatewayError(() => parse({ event: null, data: 'not json' }), 502, undefined, 'upstream_bad_response')
  })

  test('a blocked prompt in a stream: role, content_filter, usage', () => {
    const parse = createStreamParser(attempt())
    const chunks = parse(sseEvent({ promptFeedback: { blockReason: 'SAFETY' }, usageMetadata: { promptTokenCount: 4, totalTokenCount: 4 }, responseId: 'b1' }))!
    for (const chunk of chunks) validateSchema('CreateChatCompletionStreamResponse', chunk)
    expect(chunks.map((c) => c.choices[0]?.finish_reason ?? null)).toEqual([null, 'content_filter', null])
    expect(chunks.at(-1)).toMatchObject({ id: 'chatcmpl-b1', choices: [], usage: { prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 } })
  })

  test('n candidates: one role chunk each, usage only when the last one finishes', () => {
    const parse = createStreamParser(attempt({ n: 2 }))
    const usage = { promptTokenCount: 3, candidatesTokenCount: 4, totalTokenCount: 7 }
    const first = parse(sseEvent({ candidates: [{ content: { parts: [{ text: 'a' }] } }, { content: { parts: [{ text: 'b' }] }, index: 1 }], usageMetadata: usage }))!
    expect(first.map((c) => [c.choices[0].index, c.choices[0].delta])).toEqual([
      [0, { role: 'assistant', content: '' }],
      [0, { content: 'a' }],
      [1, { role: 'assistant', content: '' }],
      [1, { content: 'b' }],
    ])
    const second = parse(sseEvent({ candidates: [{ content: { parts: [{ text: '!' }] }, finishReason: 'STOP', index: 0 }], usageMetadata: usage }))!
    expect(second.some((c) => c.usage)).toBe(false)
    const third = parse(sseEvent({ candidates: [{ content: { parts: [{ text: '' }] }, finishReason: 'MAX_TOKENS', index: 1 }], usageMetadata: usage }))!
    expect(third.map((c) => c.choices[0]?.finish_reason ?? 'usage')).toEqual(['length', 'usage'])
    expect(third.at(-1)!.usage).toEqual({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 })
  })
})

describe('embeddings translation', () => {
  test('one batchEmbedContents request per input, dimensions → outputDimensionality, other fields dropped', () => {
    const body = { model: 'virtual', input: ['hello', 'world'], dimensions: 256, encoding_format: 'base64', user: 'u' }
    const ctx = attempt(body, {}, 'gemini-embedding-001')
    const upstream = buildEmbeddingsRequest(body, ctx)
    expect(upstream.url).toBe('http://x/v1beta/models/gemini-embedding-001:batchEmbedContents')
    expect(upstream.headers['x-goog-api-key']).toBe('k')
    expect(JSON.parse(upstream.body as string)).toEqual({
      requests: [
        { model: 'models/gemini-embedding-001', content: { parts: [{ text: 'hello' }] }, outputDimensionality: 256 },
        { model: 'models/gemini-embedding-001', content: { parts: [{ text: 'world' }] }, outputDimensionality: 256 },
      ],
    })
    expect(ctx.dropped).toEqual(['user'])
    expect(JSON.parse(buildEmbeddingsRequest({ input: 'one' }, attempt()).body as string).requests).toHaveLength(1)
  })

  test('token arrays and batches over 100 are refused up front', () => {
    expectGatewayError(() => buildEmbeddingsRequest({ input: [1, 2, 3] }, attempt()), 400, 'input')
    expectGatewayError(() => buildEmbeddingsRequest({ input: [] }, attempt()), 400, 'input')
    expectGatewayError(() => buildEmbeddingsRequest({ input: Array(101).fill('x') }, attempt()), 400, 'input', 'too_many_inputs')
  })

  test('the response becomes an OpenAI list with estimated usage (Gemini reports none)', () => {
    const ctx = attempt({ input: ['hello', 'wonderful world'] }, {}, 'gemini-embedding-001')
    const out = parseEmbeddingsResponse({ embeddings: [{ values: [0.1, -0.2] }, { values: [0.3, 0.4] }] }, ctx)
    validateEmbeddingResponse(out)
    expect(out).toEqual({
      object: 'list',
      data: [
        { object: 'embedding', index: 0, embedding: [0.1, -0.2] },
        { object: 'embedding', index: 1, embedding: [0.3, 0.4] },
      ],
      model: 'gemini-embedding-001',
      usage: { prompt_tokens: 2 + 4, total_tokens: 6 },
    })
    expectGatewayError(() => parseEmbeddingsResponse({} as any, ctx), 502, undefined, 'upstream_bad_response')
  })
})

describe('fake Gemini upstream', () => {
  let fake: FakeGemini
  beforeAll(async () => {
    fake = await startFakeGemini({ streamChunkBytes: 3 })
  })
  afterAll(() => fake.stop())

  /** The adapter against the fake, the way the core calls it. */
  async function call(body: Record<string, any>, model = 'gemini-2.5-flash') {
    const ctx = attempt(body, { baseURL: fake.url, apiKey: FAKE_API_KEY }, model)
    const upstream = buildRequest(body, ctx)
    const response = await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })
    if (!response.ok) throw parseError(response.status, await response.json().catch(() => null), response.headers)
    if (!body.stream) return parseResponse((await response.json()) as any, ctx)
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

  const post = (path: string, body: unknown, headers: Record<string, string> = { 'x-goog-api-key': FAKE_API_KEY }) =>
    fetch(`${fake.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })
  const errorOf = async (res: Response) => ((await res.json()) as any).error
  const weatherTool = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, additionalProperties: false } } }]

  test('non-streaming text reply through the adapter, usage as logged', async () => {
    const out: any = await call(chat([{ role: 'system', content: 'Be nice.' }, { role: 'user', content: 'Say hello' }]))
    validateSchema('CreateChatCompletionResponse', out)
    expect(out.choices[0].message.content).toBe(FAKE_REPLY)
    expect(out.usage).toEqual({ ...fake.usageLog.at(-1)!, total_tokens: fake.usageLog.at(-1)!.prompt_tokens + fake.usageLog.at(-1)!.completion_tokens })
    const seen = fake.requests.at(-1)!
    expect(seen.headers['x-goog-api-key']).toBe(FAKE_API_KEY)
    expect(seen.body.systemInstruction).toEqual({ parts: [{ text: 'Be nice.' }] })
  })

  test('streaming: CRLF-framed data-only events, no [DONE], final event with finishReason and usageMetadata', async () => {
    const { chunks, raw }: any = await call(chat([{ role: 'user', content: 'Say hello' }], { stream: true }))
    const events = raw.split('\r\n\r\n').filter(Boolean)
    expect(raw.endsWith('\r\n\r\n')).toBe(true)
    expect(events.every((e: string) => e.startsWith('data: {"candidates": [') && !e.includes('\n'))).toBe(true)
    expect(raw).not.toContain('[DONE]')
    const lastEvent = JSON.parse(events.at(-1).slice(6))
    expect(lastEvent.candidates[0].finishReason).toBe('STOP')
    expect(lastEvent.usageMetadata.candidatesTokenCount).toBe(fake.usageLog.at(-1)!.completion_tokens)
    for (const chunk of chunks) validateSchema('CreateChatCompletionStreamResponse', chunk)
    expect(chunks.map((c: any) => c.choices[0]?.delta.content ?? '').join('')).toBe(FAKE_REPLY)
    expect(chunks.at(-1).usage).toMatchObject(fake.usageLog.at(-1)!)
  })

  test('tool round trip: a functionCall without id, then the functionResponse answer', async () => {
    const first: any = await call(chat([{ role: 'user', content: "What's the weather in Paris?" }], { tools: weatherTool }))
    expect(first.choices[0].finish_reason).toBe('tool_calls')
    const toolCall = first.choices[0].message.tool_calls[0]
    expect(toolCall.function).toEqual({ name: 'get_weather', arguments: '{"city":"Paris"}' })
    expect(toolCall.id).toMatch(/^call_[A-Za-z0-9]{24}$/)

    const streamed: any = await call(chat([{ role: 'user', content: "What's the weather in Paris?" }], { tools: weatherTool, stream: true }))
    expect(collect(streamed.chunks)).toMatchObject({ content: '', finish: 'tool_calls', toolCalls: [{ name: 'get_weather', arguments: '{"city":"Paris"}' }] })

    const second: any = await call(
      chat([{ role: 'user', content: "What's the weather in Paris?" }, { role: 'assistant', content: null, tool_calls: [toolCall] }, { role: 'tool', tool_call_id: toolCall.id, content: '{"sky":"clear"}' }], {
        tools: weatherTool,
      }),
    )
    expect(second.choices[0].message.content).toBe(FAKE_TOOL_RESULT_REPLY)
    expect(fake.requests.at(-1)!.body.contents[2]).toEqual({ role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { sky: 'clear' } } }] })
  })

  test('Gemini 3: the thought signature survives the round trip; a call sent back without one is refused', async () => {
    const question = [{ role: 'user', content: "What's the weather in Paris?" }]
    const first: any = await call(chat(question, { tools: weatherTool }), 'gemini-3-pro-preview')
    const toolCall = first.choices[0].message.tool_calls[0]
    const signature = thoughtSignatureOf(toolCall.id)
    expect(signature!.length).toBeGreaterThan(40)
    const history = (id: string) => chat([...question, { role: 'assistant', content: null, tool_calls: [{ ...toolCall, id }] }, { role: 'tool', tool_call_id: id, content: 'sunny' }], { tools: weatherTool })
    const second: any = await call(history(toolCall.id), 'gemini-3-pro-preview')
    expect(second.choices[0].message.content).toBe(FAKE_TOOL_RESULT_REPLY)
    expect(fake.requests.at(-1)!.body.contents[1].parts[0].thoughtSignature).toBe(signature)
    await expect(call(history('call_plain'), 'gemini-3-pro-preview')).rejects.toMatchObject({ status: 400, message: expect.stringContaining('missing a thought_signature') })
    await expect(call(history('call_x__ts__Zm9yZ2Vk'), 'gemini-3-pro-preview')).rejects.toMatchObject({ status: 400, message: 'Corrupted thought signature.' })
  })

  test('scripted errors in Google’s envelope, and a mid-stream error event', async () => {
    await expect(call(chat([{ role: 'user', content: 'fail-400' }]))).rejects.toMatchObject({ status: 400, code: 'invalid_argument', message: 'Request contains an invalid argument.' })
    const limited = await call(chat([{ role: 'user', content: 'fail-429' }])).catch((e) => e)
    expect(limited).toMatchObject({ status: 429, code: 'resource_exhausted', headers: { 'retry-after': '3' } })
    await expect(call(chat([{ role: 'user', content: 'fail-500' }]))).rejects.toMatchObject({ status: 500, code: 'internal' })
    await expect(call(chat([{ role: 'user', content: 'fail-503' }]))).rejects.toMatchObject({ status: 503, code: 'unavailable' })
    const logged = fake.usageLog.length
    await expect(call(chat([{ role: 'user', content: 'midstream-error' }], { stream: true }))).rejects.toMatchObject({ status: 502, code: 'internal' })
    expect(fake.usageLog.length).toBe(logged)
  })

  test('finish-length, maxOutputTokens and stopSequences', async () => {
    const cut: any = await call(chat([{ role: 'user', content: 'finish-length' }]))
    expect(cut.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: 'Hello from fake' } })
    const max: any = await call(chat([{ role: 'user', content: 'hello' }], { max_tokens: 2 }))
    expect(max.choices[0]).toMatchObject({ finish_reason: 'length', message: { content: 'Hello from' } })
    const stopped: any = await call(chat([{ role: 'user', content: 'hello' }], { stop: ' fake' }))
    expect(stopped.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'Hello from' } })
    const two: any = await call(chat([{ role: 'user', content: 'hello' }], { n: 2 }))
    expect(two.choices.map((c: any) => c.message.content)).toEqual([FAKE_REPLY, FAKE_REPLY])
  })

  test('credentials as Google answers them: ?key= accepted, wrong key 400 API_KEY_INVALID, none 403', async () => {
    const body = { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] }
    expect((await post(`/models/gemini-2.5-flash:generateContent?key=${FAKE_API_KEY}`, body, {})).status).toBe(200)
    const wrong = await post('/models/gemini-2.5-flash:generateContent', body, { 'x-goog-api-key': 'AIza-wrong' })
    expect(wrong.status).toBe(400)
    const wrongError = await errorOf(wrong)
    expect(wrongError).toMatchObject({ code: 400, status: 'INVALID_ARGUMENT', message: 'API key not valid. Please pass a valid API key.' })
    expect(parseError(400, { error: wrongError }, wrong.headers).status).toBe(401)
    const none = await post('/models/gemini-2.5-flash:generateContent', body, {})
    expect(none.status).toBe(403)
    expect((await errorOf(none)).status).toBe('PERMISSION_DENIED')
  })

  test('the fake parses like Google’s proto-JSON front end', async () => {
    const url = '/models/gemini-2.5-flash:generateContent'
    const user = [{ role: 'user', parts: [{ text: 'hi' }] }]
    // Unknown names, at the top and nested; snake_case aliases accepted.
    expect((await errorOf(await post(url, { contents: user, stream: true }))).message).toBe('Invalid JSON payload received. Unknown name "stream": Cannot find field.')
    expect((await errorOf(await post(url, { contents: user, generationConfig: { max_tokens: 5 } }))).message).toBe(
      `Invalid JSON payload received. Unknown name "max_tokens" at 'generation_config': Cannot find field.`,
    )
    expect((await post(url, { contents: user, generation_config: { max_output_tokens: 5 } })).status).toBe(200)
    // `parameters` is an OpenAPI subset; JSON Schema's additionalProperties is not in it (parametersJsonSchema takes it).
    const fn = (decl: Record<string, unknown>) => ({ contents: user, tools: [{ functionDeclarations: [{ name: 'f', ...decl }] }] })
    const schema = { type: 'object', properties: { a: { type: 'string' } }, additionalProperties: false }
    expect((await errorOf(await post(url, fn({ parameters: schema })))).message).toBe(
      `Invalid JSON payload received. Unknown name "additionalProperties" at 'tools[0].function_declarations[0].parameters': Cannot find field.`,
    )
    expect((await post(url, fn({ parametersJsonSchema: schema }))).status).toBe(200)
    // Roles, empty contents, empty parts, Struct-typed args.
    expect((await errorOf(await post(url, { contents: [{ role: 'assistant', parts: [{ text: 'x' }] }] }))).message).toBe('Please use a valid role: user, model.')
    expect((await errorOf(await post(url, { contents: [] }))).message).toContain('contents is not specified')
    expect((await errorOf(await post(url, { contents: [{ role: 'user', parts: [] }] }))).message).toContain('contents.parts must not be empty')
    const badArgs = { contents: [...user, { role: 'model', parts: [{ functionCall: { name: 'f', args: '{}' } }] }] }
    expect((await errorOf(await post(url, badArgs))).message).toContain(`Invalid value at 'contents[1].parts[0].function_call.args' (type.googleapis.com/google.protobuf.Struct)`)
    const malformed = await post(url, '{"contents": [')
    expect(malformed.status).toBe(400)
    expect((await errorOf(malformed)).message).toStartWith('Invalid JSON payload received.')
  })

  test('the fake enforces the function-calling turn rules', async () => {
    const url = '/models/gemini-2.5-flash:generateContent'
    const call = (name: string) => ({ functionCall: { name, args: {} } })
    const answer = (name: string) => ({ functionResponse: { name, response: { ok: true } } })
    const two = { role: 'model', parts: [call('a'), call('b')] }
    const split = { contents: [{ role: 'user', parts: [{ text: 'go' }] }, two, { role: 'user', parts: [answer('a')] }, { role: 'user', parts: [answer('b')] }] }
    expect((await errorOf(await post(url, split))).message).toBe(
      'Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.',
    )
    const unmerged = { contents: [{ role: 'user', parts: [{ text: 'go' }] }, { role: 'model', parts: [{ text: 'ok' }] }, { role: 'model', parts: [call('a')] }] }
    expect((await errorOf(await post(url, unmerged))).message).toContain('function call turn comes immediately after a user turn')
    const orphan = { contents: [{ role: 'user', parts: [answer('a')] }] }
    expect((await errorOf(await post(url, orphan))).message).toContain('function response turn comes immediately after a function call turn')
  })

  test('streamGenerateContent without alt=sse is one JSON array; unknown routes are Google’s HTML 404', async () => {
    const res = await post('/models/gemini-2.5-flash:streamGenerateContent', { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] })
    const array = (await res.json()) as any[]
    expect(Array.isArray(array)).toBe(true)
    expect(array.map((e) => e.candidates[0].content.parts[0].text).join('')).toBe(FAKE_REPLY)
    const missing = await post('/models/gemini-2.5-flash:chat', {})
    expect(missing.status).toBe(404)
    expect(missing.headers.get('content-type')).toContain('text/html')
    const embedOnChat = await post('/models/gemini-embedding-001:generateContent', { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] })
    expect(embedOnChat.status).toBe(404)
    expect((await errorOf(embedOnChat)).message).toContain('is not supported for generateContent')
  })

  test('embeddings through the adapter; the batch model must match the URL', async () => {
    const body = { model: 'virtual', input: ['hello', 'world'], dimensions: 8 }
    const ctx = attempt(body, { baseURL: fake.url, apiKey: FAKE_API_KEY }, 'gemini-embedding-001')
    const upstream = buildEmbeddingsRequest(body, ctx)
    const res = await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })
    expect(res.status).toBe(200)
    const out = parseEmbeddingsResponse((await res.json()) as any, ctx)
    validateEmbeddingResponse(out)
    expect(out.data.map((d: any) => d.embedding.length)).toEqual([8, 8])
    expect(out.data[0].embedding).not.toEqual(out.data[1].embedding)
    expect({ prompt_tokens: out.usage.prompt_tokens, completion_tokens: 0 }).toEqual(fake.usageLog.at(-1)!)
    const mismatch = await post('/models/gemini-embedding-001:batchEmbedContents', { requests: [{ model: 'models/other', content: { parts: [{ text: 'x' }] } }] })
    expect(mismatch.status).toBe(400)
  })
})
