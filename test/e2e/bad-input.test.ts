import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { exchange } from '../helpers/raw-http.ts'

/** Every bad input gets a clear OpenAI-style error with the right status: never a crash, a hang or a stack. */
let fake: FakeOpenAI
let gw: TestGateway
let key: string
let keyId: string

const send = (path: string, body: string | object, headers: Record<string, string> = { authorization: `Bearer ${key}` }) =>
  fetch(`${gw.baseURL}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })

/** Asserts the status and the single error envelope, and returns the error object. */
async function expectError(res: Response, status: number, expected: { code?: string | null; param?: string | null; type?: string } = {}) {
  const body = (await res.json()) as any
  expect(res.status).toBe(status)
  validateSchema('ErrorResponse', body)
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type'])
  expect(body.error.message.length).toBeGreaterThan(10)
  expect(body.error.message).not.toMatch(/\bat .*\.ts:\d+/) // no stack traces
  for (const [k, v] of Object.entries(expected)) expect(body.error[k]).toBe(v)
  return body.error
}

const chat = (content = 'Hi', extra: Record<string, unknown> = {}) => ({ model: 'my-gpt4', messages: [{ role: 'user', content }], ...extra })

beforeAll(async () => {
  fake = await startFakeOpenAI()
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'dead', type: 'openai', base_url: 'http://127.0.0.1:9/v1', api_key: 'x' })
  await gw.admin('POST', '/providers', {
    name: 'impatient',
    type: 'openai',
    base_url: fake.url,
    api_key: 'sk-upstream-test',
    options: { timeouts: { first_byte_ms: 300, idle_ms: 400 } },
  })
  await gw.admin('POST', '/models', { name: 'my-gpt4', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  await gw.admin('POST', '/models', { name: 'secret-model', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  await gw.admin('POST', '/models', { name: 'unreachable', targets: [{ provider: 'dead', model: 'gpt-4o' }] })
  await gw.admin('POST', '/models', { name: 'impatient', targets: [{ provider: 'impatient', model: 'gpt-4o' }] })
  const created = await gw.admin('POST', '/keys', { name: 'client', allowed_models: ['my-*', 'unreachable', 'impatient'] })
  key = created.key
  keyId = created.id
})

afterAll(async () => {
  await gw.close()
  fake.stop()
})

describe('request validation', () => {
  test('malformed JSON → 400', async () => {
    await expectError(await send('/chat/completions', '{"model": "my-gpt4", "messages": ['), 400, { type: 'invalid_request_error', code: 'invalid_json' })
  })

  test('missing model or messages → 400 naming the param', async () => {
    await expectError(await send('/chat/completions', { messages: [{ role: 'user', content: 'x' }] }), 400, { param: 'model' })
    await expectError(await send('/chat/completions', { model: 'my-gpt4' }), 400, { param: 'messages' })
    await expectError(await send('/chat/completions', chat('x', { temperature: 7 })), 400, { param: 'temperature' })
    await expectError(await send('/chat/completions', { model: 'my-gpt4', messages: [{ role: 'wizard', content: 'x' }] }), 400, {
      param: 'messages[0].role',
    })
    await expectError(await send('/embeddings', { model: 'my-gpt4' }), 400, { param: 'input' })
    await expectError(await send('/chat/completions', '[1,2]'), 400)
  })

  test('a body that is not UTF-8 → 400 invalid_json, with and without Content-Length; U+FFFD itself is fine', async () => {
    const before = fake.requests.length
    const json = (content: number[]) => new Uint8Array([...Buffer.from('{"model":"my-gpt4","messages":[{"role":"user","content":"'), ...content, ...Buffer.from('"}]}')])
    const raw = (body: RequestInit['body']) => fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body })
    const bad = json([0x68, 0xff, 0xfe, 0x69])
    await expectError(await raw(bad), 400, { code: 'invalid_json' })
    await expectError(await raw(new ReadableStream({ start: (c) => (c.enqueue(bad), c.close()) })), 400, { code: 'invalid_json' })
    expect(fake.requests.length).toBe(before)
    // The replacement character, validly encoded, is text like any other.
    expect((await raw(json([0xef, 0xbf, 0xbd]))).status).toBe(200)
  })

  test('a compressed body (Content-Encoding) → 415 naming the encoding, JSON and multipart; identity is fine', async () => {
    const before = fake.requests.length
    const post = (path: string, body: Uint8Array | string, type: string, encoding: string) =>
      fetch(`${gw.baseURL}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': type, 'content-encoding': encoding }, body })
    const gzipped = Bun.gzipSync(JSON.stringify(chat()))
    const error = await expectError(await post('/chat/completions', gzipped, 'application/json', 'gzip'), 415, { code: 'unsupported_content_encoding' })
    expect(error.message).toContain("'gzip'")
    const form = '--b\r\ncontent-disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--b--\r\n'
    await expectError(await post('/audio/transcriptions', Bun.gzipSync(form), 'multipart/form-data; boundary=b', 'gzip'), 415, { code: 'unsupported_content_encoding' })
    expect(fake.requests.length).toBe(before)
    expect((await post('/chat/completions', JSON.stringify(chat()), 'application/json', 'identity')).status).toBe(200)
  })

  test('a body cut short (the client reset the connection, or sent FIN before the end) is the client’s 499, not a gateway 500', async () => {
    const port = Number(new URL(gw.baseURL).port)
    const head = (path: string, type: string) =>
      `POST ${path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${key}\r\ncontent-type: ${type}\r\ncontent-length: 200000\r\n\r\n`
    const json = head('/v1/chat/completions', 'application/json') + JSON.stringify(chat('cut short')).slice(0, 20)
    const form = head('/v1/audio/transcriptions', 'multipart/form-data; boundary=b') + '--b\r\ncontent-disposition: form-data; name="model"\r\n\r\nwhisper\r\n--b\r\n'
    const count = async (status: number) => {
      await gw.gateway.records!.flush()
      return Number((await gw.gateway.store.sql`SELECT COUNT(*) AS n FROM request_records WHERE status = ${status}`)[0].n)
    }
    const before = await count(499)
    for (const [payload, end] of [[json, 'destroy'], [json, 'end'], [form, 'destroy']] as const) expect(await exchange(port, payload, 3000, end)).toBe('')
    for (let i = 0; i < 50 && (await count(499)) < before + 3; i++) await Bun.sleep(20)
    expect(await count(499)).toBe(before + 3)
    expect(await count(500)).toBe(0)
  })

  test('an invalid value’s message says what the param accepts', async () => {
    const said = async (path: string, body: object, param: string) => (await expectError(await send(path, body), 400, { param, code: 'invalid_value' })).message
    expect(await said('/chat/completions', chat('x', { temperature: 5 }), 'temperature')).toBe("Invalid value for 'temperature': expected a number from 0 to 2.")
    expect(await said('/chat/completions', chat('x', { n: 1.5 }), 'n')).toBe("Invalid value for 'n': expected an integer from 1 to 128.")
    expect(await said('/chat/completions', { model: 'my-gpt4', messages: [{ role: 'user', content: 5 }] }, 'messages[0].content')).toBe(
      "Invalid value for 'messages[0].content': expected a string or an array.",
    )
    expect(await said('/embeddings', { model: 'my-gpt4', input: [] }, 'input')).toBe("Invalid value for 'input': expected a string or a non-empty array.")
    // A token count past 32 bits (1e308 parses as an integer) would reserve an infinite budget.
    expect(await said('/chat/completions', chat('x', { max_tokens: 1e308 }), 'max_tokens')).toBe("Invalid value for 'max_tokens': expected an integer from 1 to 2147483647.")
  })

  test('unknown model → 404 model_not_found; a model the key may not use → 403', async () => {
    await expectError(await send('/chat/completions', { ...chat(), model: 'nope' }), 404, { code: 'model_not_found', param: 'model' })
    await expectError(await send('/chat/completions', { ...chat(), model: 'secret-model' }), 403, { type: 'permission_error', param: 'model' })
  })

  test('body over the limit → 413, with and without Content-Length', async () => {
    const huge = chat('x'.repeat(1_200_000))
    await expectError(await send('/chat/completions', huge), 413)
    const chunked = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(JSON.stringify(huge)))
        c.close()
      },
    })
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: chunked,
    })
    await expectError(res, 413)
  })

  test('api_base / base_url anywhere in the body → 400, and nothing reaches the upstream', async () => {
    const before = fake.requests.length
    await expectError(await send('/chat/completions', chat('x', { api_base: 'http://evil' })), 400, { param: 'api_base' })
    await expectError(await send('/chat/completions', chat('x', { extra: { deep: [{ baseURL: 'http://evil' }] } })), 400, {
      param: 'extra.deep[0].baseURL',
    })
    await expectError(await send('/embeddings', { model: 'my-gpt4', input: 'x', base_url: 'http://evil' }), 400)
    expect(fake.requests.length).toBe(before)
    // A tool whose arguments happen to include a base_url property is data, not configuration.
    const tools = [{ type: 'function', function: { name: 'fetch', parameters: { type: 'object', properties: { base_url: { type: 'string' } } } } }]
    expect((await send('/chat/completions', chat('x', { tools }))).status).toBe(200)
  })
})

describe('authentication', () => {
  test('missing, malformed, wrong, disabled, expired and deleted keys → 401', async () => {
    await expectError(await send('/chat/completions', chat(), {}), 401, { code: 'missing_api_key' })
    await expectError(await send('/chat/completions', chat(), { authorization: 'Bearer sk-not-ours' }), 401, { code: 'invalid_api_key' })
    // Well-formed but unknown: same answer, no hint.
    const stranger = (await gw.admin('POST', '/keys', { name: 'stranger' })) as { id: string; key: string }
    await gw.admin('DELETE', `/keys/${stranger.id}`)
    await expectError(await send('/chat/completions', chat(), { authorization: `Bearer ${stranger.key}` }), 401, { code: 'invalid_api_key' })

    const other = await gw.admin('POST', '/keys', { name: 'other' })
    expect((await send('/chat/completions', chat(), { 'x-api-key': other.key })).status).toBe(200)
    expect((await send('/chat/completions', chat(), { 'api-key': other.key })).status).toBe(200)
    await gw.admin('PATCH', `/keys/${other.id}`, { enabled: false })
    await expectError(await send('/chat/completions', chat(), { 'x-api-key': other.key }), 401, { code: 'key_disabled' })
    await gw.admin('PATCH', `/keys/${other.id}`, { enabled: true, expires_at: Math.floor(Date.now() / 1000) - 1 })
    await expectError(await send('/chat/completions', chat(), { 'x-api-key': other.key }), 401, { code: 'key_expired' })
  })

  test('a key expiring between two requests is refused on the next one', async () => {
    const soon = await gw.admin('POST', '/keys', { name: 'soon', expires_at: new Date(Date.now() + 1200).toISOString() })
    expect((await send('/chat/completions', chat(), { authorization: `Bearer ${soon.key}` })).status).toBe(200)
    await Bun.sleep(1300)
    await expectError(await send('/chat/completions', chat(), { authorization: `Bearer ${soon.key}` }), 401, { code: 'key_expired' })
  })

  test('a disabled key is refused on the very next request (cache invalidated)', async () => {
    expect((await send('/chat/completions', chat())).status).toBe(200)
    await gw.admin('PATCH', `/keys/${keyId}`, { enabled: false })
    await expectError(await send('/chat/completions', chat()), 401)
    await gw.admin('PATCH', `/keys/${keyId}`, { enabled: true })
    expect((await send('/chat/completions', chat())).status).toBe(200)
  })
})

describe('upstream failures', () => {
  test('upstream 4xx → same status with the upstream message', async () => {
    const error = await expectError(await send('/chat/completions', chat('fail-400')), 400)
    expect(error.message).toContain('fail-400')
    expect(error.param).toBe('messages')
  })

  test('upstream 5xx → 5xx in our envelope; the SDK sees typed errors', async () => {
    await expectError(await send('/chat/completions', chat('fail-503')), 503)
    const client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
    expect(await client.chat.completions.create(chat('fail-500') as any).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.InternalServerError)
  })

  test('upstream unreachable → 502', async () => {
    await expectError(await send('/chat/completions', { ...chat(), model: 'unreachable' }), 502, { code: 'upstream_unreachable' })
  })

  test('upstream first-byte timeout → 504 near the configured timeout', async () => {
    const started = performance.now()
    await expectError(await send('/chat/completions', { ...chat('slow-first-byte:3000'), model: 'impatient' }), 504, { code: 'upstream_timeout' })
    expect(performance.now() - started).toBeLessThan(300 + 500)
    const streamStarted = performance.now()
    await expectError(await send('/chat/completions', { ...chat('slow-first-byte:3000', { stream: true }), model: 'impatient' }), 504)
    expect(performance.now() - streamStarted).toBeLessThan(300 + 500)
  })

  test('upstream dies mid-stream → an error event the SDK raises', async () => {
    const res = await send('/chat/completions', chat('stream-die', { stream: true }))
    expect(res.status).toBe(200)
    const text = await res.text()
    const lastEvent = text.trim().split('\n\n').at(-1)!
    const payload = JSON.parse(lastEvent.replace(/^data: /, ''))
    validateSchema('ErrorResponse', payload)
    expect(text).not.toContain('[DONE]')

    const client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
    expect(await client.chat.completions.stream(chat('stream-die') as any).finalChatCompletion().catch((e: unknown) => e)).toBeInstanceOf(OpenAI.APIError)
  })

  test('a stalled stream ends with an error event after the idle timeout', async () => {
    const started = performance.now()
    const res = await send('/chat/completions', { ...chat('stream-stall', { stream: true }), model: 'impatient' })
    const text = await res.text()
    expect(performance.now() - started).toBeLessThan(400 + 1000)
    expect(text).toContain('"code":"upstream_timeout"')
    // The stalled upstream is hung up on, not left open.
    const closedBy = Date.now() + 1000
    while (fake.openStreams > 0 && Date.now() < closedBy) await Bun.sleep(10)
    expect(fake.openStreams).toBe(0)
  })
})

describe('client disconnect', () => {
  test('aborting a stream aborts the upstream within a second', async () => {
    // Streams cut by earlier tests close on their own schedule; start from a quiet upstream.
    for (let i = 0; i < 100 && fake.openStreams > 0; i++) await Bun.sleep(20)
    expect(fake.openStreams).toBe(0)
    const abortedBefore = fake.aborted
    const controller = new AbortController()
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify(chat('slow-stream:100', { stream: true })),
      signal: controller.signal,
    })
    const reader = res.body!.getReader()
    await reader.read()
    await reader.read()
    controller.abort()
    const deadline = Date.now() + 1000
    while (fake.aborted === abortedBefore && Date.now() < deadline) await Bun.sleep(20)
    expect(fake.aborted).toBe(abortedBefore + 1)
    expect(fake.openStreams).toBe(0)
  })
})

describe('long first bytes', () => {
  test('a first byte later than the server idle timeout still arrives', async () => {
    const patient = await startGateway({ idleTimeoutSec: 1 })
    try {
      await patient.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
      await patient.admin('POST', '/models', { name: 'my-gpt4', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
      const k = (await patient.admin('POST', '/keys', { name: 'k' })).key
      for (const stream of [false, true]) {
        const res = await fetch(`${patient.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
          body: JSON.stringify(chat('slow-first-byte:2500', { stream })),
        })
        expect(res.status).toBe(200)
        expect(await res.text()).toContain('Hello')
      }
    } finally {
      await patient.close()
    }
  }, 15_000)
})
