import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { mkdtempSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { generateVirtualKey } from '../../src/store/crypto.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { startProcess, stopProcess } from '../helpers/process.ts'

/**
 * Issue 10's bugs and weaknesses reproduced from outside: names that cannot go into a header, provider
 * numbers that are not numbers, keys quoted back by providers, bodies that are too deep, too slow or too big,
 * overload, and floods of unknown keys.
 */

/** A provider key with no recognisable shape: only scrubbing by value can catch it. */
const PROVIDER_KEY = 'prov-9f8e7d6c5b4a3210fedcba98'
/** A password in a provider's base URL. */
const URL_PASSWORD = 'url-pass-7f3e9a41'

/**
 * An OpenAI-compatible upstream with the quirks real ones have, scripted by the last user message.
 * It speaks OpenAI's chat format (JSON and SSE) and error envelope.
 */
function startQuirkyUpstream() {
  const requests: { headers: Record<string, string>; body: any }[] = []
  const completion = (model: string, usage: unknown) => ({
    id: 'chatcmpl-quirk',
    object: 'chat.completion',
    created: 1_700_000_000,
    model,
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hi there', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage,
  })
  const openAIError = (status: number, message: string, code: string) =>
    Response.json({ error: { message, type: 'invalid_request_error', param: null, code } }, { status })
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const body = (await req.json()) as any
      requests.push({ headers: Object.fromEntries(req.headers), body })
      const key = (req.headers.get('authorization') ?? '').replace(/^Bearer /, '')
      if (new URL(req.url).pathname.endsWith('/responses')) {
        // A Responses stream its server fails, quoting the key.
        const response = { id: 'resp_quirk', object: 'response', created_at: 1_700_000_000, status: 'in_progress', model: body.model, output: [] }
        const failed = { ...response, status: 'failed', error: { code: 'server_error', message: `Quota of ${key} exceeded.` } }
        const events = [['response.created', response], ['response.failed', failed]] as const
        return new Response(events.map(([type, r], i) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: i, response: r })}\n\n`).join(''), {
          headers: { 'content-type': 'text/event-stream' },
        })
      }
      const text: string = body.messages.at(-1).content
      if (text === 'bad-usage') return Response.json(completion(body.model, { prompt_tokens: 'abc', completion_tokens: -3, total_tokens: null }))
      // Usage that reports nothing (or a total alone), and counts no request comes near: none is usage to bill by.
      const hollow: Record<string, unknown> = { 'empty-usage': {}, 'null-usage': { prompt_tokens: null, completion_tokens: null }, 'total-usage': { total_tokens: 5000 }, 'huge-usage': { prompt_tokens: 1e15, completion_tokens: 1e15, total_tokens: 2e15 } }
      if (text in hollow) return Response.json(completion(body.model, hollow[text]))
      if (text === 'quote-key-401') return openAIError(401, `Incorrect API key provided: ${key}. You can find your API key at …`, 'invalid_api_key')
      if (text === 'quote-key-400') return openAIError(400, `Your key ${key} may not use the parameter 'foo'.`, 'invalid_value')
      if (text === 'quote-key-fields') return Response.json({ error: { message: 'Invalid key.', type: 'invalid_request_error', param: key, code: key } }, { status: 400 })
      if (text === 'quote-key-midstream') {
        const event = `data: ${JSON.stringify({ error: { message: `Quota of ${key} exceeded.`, type: 'server_error', param: null, code: 'quota' } })}\n\n`
        return new Response(event, { headers: { 'content-type': 'text/event-stream' } })
      }
      if (text === 'big') return Response.json(completion(body.model, { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, padding: 'x'.repeat(8192) }))
      if (text === 'big-chunked') {
        const json = JSON.stringify(completion(body.model, { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2, padding: 'x'.repeat(8192) }))
        const stream = new ReadableStream({
          start(c) {
            for (let i = 0; i < json.length; i += 1000) c.enqueue(new TextEncoder().encode(json.slice(i, i + 1000)))
            c.close()
          },
        })
        return new Response(stream, { headers: { 'content-type': 'application/json' } })
      }
      if (body.stream) {
        const chunk = (delta: object, finish: string | null) =>
          `data: ${JSON.stringify({ id: 'chatcmpl-quirk', object: 'chat.completion.chunk', created: 1_700_000_000, model: body.model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`
        const usage = `data: ${JSON.stringify({ id: 'chatcmpl-quirk', object: 'chat.completion.chunk', created: 1_700_000_000, model: body.model, choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } })}\n\n`
        const slow = text.startsWith('slow:') ? Number(text.slice(5)) : 0
        const stream = new ReadableStream({
          async start(c) {
            const enc = new TextEncoder()
            c.enqueue(enc.encode(chunk({ role: 'assistant', content: '' }, null)))
            if (slow) await Bun.sleep(slow)
            c.enqueue(enc.encode(chunk({ content: 'Hi there' }, null)))
            c.enqueue(enc.encode(chunk({}, 'stop') + usage + 'data: [DONE]\n\n'))
            c.close()
          },
        })
        return new Response(stream, { headers: { 'content-type': 'text/event-stream' } })
      }
      return Response.json(completion(body.model, { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 }))
    },
  })
  return { url: `http://127.0.0.1:${server.port}/v1`, requests, stop: () => server.stop(true) }
}

async function expectError(res: Response, status: number, code?: string) {
  const body = (await res.json()) as any
  expect(res.status).toBe(status)
  validateSchema('ErrorResponse', body)
  if (code) expect(body.error.code).toBe(code)
  return body.error as { message: string; code: string; param: string | null }
}

let upstream: ReturnType<typeof startQuirkyUpstream>
let fake: FakeOpenAI
let gw: TestGateway
const logs = { level: 'debug', lines: [] as string[] }
let key: string

const chat = (model: string, content: string, extra: Record<string, unknown> = {}, k = key) =>
  fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }], ...extra }),
  })

async function ledgerRows(): Promise<any[]> {
  await gw.gateway.ledger.flush()
  return gw.gateway.store.sql`SELECT * FROM spend_ledger ORDER BY created_at`
}

beforeAll(async () => {
  upstream = startQuirkyUpstream()
  fake = await startFakeOpenAI()
  gw = await startGateway({ maxUpstreamBodyBytes: 4096, bodyTimeoutMs: 1000 }, logs)
  await gw.admin('POST', '/providers', { name: 'fake – prod', type: 'openai', base_url: upstream.url, api_key: PROVIDER_KEY })
  await gw.admin('POST', '/providers', { name: 'standard', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'rocket', targets: [{ provider: 'fake – prod', model: 'fixed-🚀' }] })
  await gw.admin('POST', '/models', { name: 'injected', targets: [{ provider: 'fake – prod', model: 'evil\r\nx-injected: 1' }] })
  await gw.admin('POST', '/models', { name: 'quirky', targets: [{ provider: 'fake – prod', model: 'gpt-4o' }] })
  await gw.admin('POST', '/models', { name: 'standard', targets: [{ provider: 'standard', model: 'gpt-4o' }] })
  // A self-hosted server behind basic auth: the credential is in the URL, and fetch sends it as Basic auth.
  const basic = new URL(upstream.url)
  ;[basic.username, basic.password] = ['bob', URL_PASSWORD]
  await gw.admin('POST', '/providers', { name: 'behind-basic-auth', type: 'openai-compatible', base_url: basic.href })
  await gw.admin('POST', '/models', { name: 'basic', targets: [{ provider: 'behind-basic-auth', model: 'llama' }] })
  key = (await gw.admin('POST', '/keys', { name: 'one-at-a-time', max_parallel: 1 })).key
})

afterAll(async () => {
  await gw.close()
  upstream.stop()
  await fake.stop()
})

describe('bug 1: provider and model names that cannot go into a header', () => {
  test('a non-Latin-1 provider or model name: 200 with the names percent-encoded, billed, the slot released', async () => {
    const before = (await ledgerRows()).length
    // max_parallel 1: a leaked slot would make the second and third calls 429 for ever.
    for (let i = 0; i < 3; i++) {
      const res = await chat('rocket', 'hello')
      expect(res.status).toBe(200)
      expect(res.headers.get('x-conduit-provider')).toBe(encodeURIComponent('fake – prod'))
      expect(res.headers.get('x-conduit-model')).toBe(encodeURIComponent('fixed-🚀'))
      expect(decodeURIComponent(res.headers.get('x-conduit-model')!)).toBe('fixed-🚀')
      expect(((await res.json()) as any).model).toBe('rocket')
    }
    const rows = await ledgerRows()
    expect(rows.length - before).toBe(3)
    expect(rows.at(-1).provider).toBe('fake – prod')
    expect(rows.at(-1).upstream_model).toBe('fixed-🚀')
    expect(gw.gateway.metrics.inflight).toBe(0)
  })

  test('streamed through the official SDK: a stream, not a 500', async () => {
    const client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
    const stream = client.chat.completions.stream({ model: 'rocket', messages: [{ role: 'user', content: 'hello' }] })
    const final = await stream.finalChatCompletion()
    expect(final.choices[0]!.message.content).toBe('Hi there')
    expect(gw.gateway.metrics.inflight).toBe(0)
  })

  test('PR13: CR/LF in a target model name injects no header, at the client or at the upstream', async () => {
    const res = await chat('injected', 'hello')
    expect(res.status).toBe(200)
    expect(res.headers.get('x-injected')).toBeNull()
    expect(res.headers.get('x-conduit-model')).toBe(encodeURIComponent('evil\r\nx-injected: 1'))
    expect(upstream.requests.at(-1)!.headers['x-injected']).toBeUndefined()
    expect((await chat('rocket', 'hello')).status).toBe(200) // the key's slot came back
  })
})

describe('accounting after the response', () => {
  test('a sequential client never finds its last request still in flight: 150 requests under max_parallel 1 from another process, all 200, all billed', async () => {
    const before = (await ledgerRows()).length
    // Another process, as a user's client is: it sends the next request the moment it has read the last response.
    const client = `let refused = 0
      for (let i = 0; i < 150; i++) {
        const res = await fetch(process.env.URL, { method: 'POST', headers: { authorization: 'Bearer ' + process.env.KEY, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'standard', messages: [{ role: 'user', content: 'hi ' + i }] }) })
        await res.arrayBuffer()
        if (res.status !== 200) refused++
      }
      console.log(refused)`
    const child = Bun.spawn([process.execPath, '-e', client], { env: { ...process.env, URL: `${gw.baseURL}/chat/completions`, KEY: key }, stdout: 'pipe' })
    expect((await new Response(child.stdout).text()).trim()).toBe('0')
    expect(await child.exited).toBe(0)
    expect((await ledgerRows()).length - before).toBe(150)
  })
})

describe('bug 2: provider usage that is not a number', () => {
  test('is replaced by an estimate, flagged, and the ledger keeps counting', async () => {
    const res = await chat('quirky', 'bad-usage')
    expect(res.status).toBe(200)
    const id = res.headers.get('x-request-id')
    expect((await chat('quirky', 'hello')).status).toBe(200)
    const rows = await ledgerRows()
    const bad = rows.find((r) => r.request_id === id)
    expect(bad).toBeDefined()
    expect(bad.estimated).toBe(1)
    expect(bad.prompt_tokens).toBeGreaterThan(0)
    expect(bad.completion_tokens).toBeGreaterThanOrEqual(0)
    expect(rows.at(-1).prompt_tokens).toBe(5) // the next request was written after it
    const usage = await gw.admin('GET', '/usage')
    expect(usage.total.requests).toBe(rows.length)
  })

  test('usage that counts nothing ({}, nulls, a total alone) or counts no request comes near is estimated and flagged, never billed as $0 or as billions', async () => {
    for (const content of ['empty-usage', 'null-usage', 'total-usage', 'huge-usage']) {
      const res = await chat('quirky', content)
      expect(res.status).toBe(200)
      await res.text()
      const row = (await ledgerRows()).find((r) => r.request_id === res.headers.get('x-request-id'))
      expect({ content, estimated: row.estimated, prompted: row.prompt_tokens > 0, sane: row.prompt_tokens < 1000 }).toEqual({ content, estimated: 1, prompted: true, sane: true })
      expect(Number(res.headers.get('x-conduit-cost-usd'))).toBe(row.cost_micros / 1e6)
    }
  })
})

describe('bug 3 and a weakness: secrets quoted by providers', () => {
  test("a password in a provider's base URL is sealed at rest, masked in the API; one stored in clear before is sealed at the next start", async () => {
    const stored = async () => (await gw.gateway.store.sql`SELECT base_url, base_url_secret FROM providers WHERE name = 'behind-basic-auth'`)[0] as any
    const row = await stored()
    expect(row.base_url).toBe(row.base_url.replace(URL_PASSWORD, '***'))
    expect(row.base_url).toContain('bob:***@')
    expect(row.base_url_secret).not.toContain(URL_PASSWORD)
    expect(JSON.stringify(await gw.admin('GET', '/providers/behind-basic-auth'))).not.toContain(URL_PASSWORD)
    // As migration 17 found a row written before it: in clear, nothing sealed.
    const clear = new URL(upstream.url)
    ;[clear.username, clear.password] = ['bob', URL_PASSWORD]
    await gw.gateway.store.sql`UPDATE providers SET base_url = ${clear.href}, base_url_secret = NULL WHERE name = 'behind-basic-auth'`
    const again = await startGateway({ dataDir: gw.dataDir })
    try {
      const resealed = await stored()
      expect(resealed.base_url).toContain('bob:***@')
      expect(resealed.base_url_secret).not.toBeNull()
    } finally {
      await again.close()
    }
  })


  test('the masked base URL the API shows, sent back (a form saved unchanged), keeps the password; the mask is never stored as one', async () => {
    const shown = (await gw.admin('GET', '/providers/behind-basic-auth')).base_url as string
    expect(shown).toContain('bob:***@')
    await gw.admin('PATCH', '/providers/behind-basic-auth', { name: 'behind-basic-auth', base_url: shown })
    await (await chat('basic', 'Hello')).text()
    expect(upstream.requests.at(-1)!.headers.authorization).toBe(`Basic ${Buffer.from(`bob:${URL_PASSWORD}`).toString('base64')}`)
    // The mask on another URL (a host changed, the password left as shown) or on a new provider: refused, naming it.
    const moved = await gw.adminRaw('PATCH', '/providers/behind-basic-auth', { base_url: shown.replace('127.0.0.1', 'localhost') })
    expect(moved.status).toBe(400)
    expect(((await moved.json()) as any).error).toMatchObject({ param: 'base_url', code: 'invalid_value' })
    const copied = await gw.adminRaw('POST', '/providers', { name: 'copied', type: 'openai', base_url: shown })
    expect(copied.status).toBe(400)
    expect(upstream.requests.at(-1)!.headers.authorization).toBe(`Basic ${Buffer.from(`bob:${URL_PASSWORD}`).toString('base64')}`)
  })

  test('a key quoted in an upstream 401, 400 or mid-stream error reaches neither the log nor the client', async () => {
    const refused = await chat('quirky', 'quote-key-401')
    const e401 = await expectError(refused, 502, 'upstream_auth_failed')
    expect(e401.message).not.toContain(PROVIDER_KEY)
    const relayed = await chat('quirky', 'quote-key-400')
    const e400 = await expectError(relayed, 400)
    expect(e400.message).not.toContain(PROVIDER_KEY)
    expect(e400.message).toContain('[REDACTED]')
    // Another gateway in this process (as in tests) has its own secrets and must not erase ours.
    const other = await startGateway()
    await other.admin('POST', '/providers', { name: 'other', type: 'openai', base_url: fake.url, api_key: 'sk-other-gateway-key-1234' })
    await other.admin('POST', '/models', { name: 'other', targets: [{ provider: 'other', model: 'gpt-4o' }] })
    const otherKey = (await other.admin('POST', '/keys', { name: 'k' })).key
    expect((await fetch(`${other.baseURL}/models`, { headers: { authorization: `Bearer ${otherKey}` } })).status).toBe(200) // loads its catalog
    await other.close()
    // A URL's password, quoted back as the Basic auth fetch made of it.
    const basic = await (await chat('basic', 'quote-key-400')).text()
    expect(upstream.requests.at(-1)!.headers.authorization).toBe(`Basic ${Buffer.from(`bob:${URL_PASSWORD}`).toString('base64')}`)
    expect(basic).toContain('[REDACTED]')
    expect(basic).not.toContain(Buffer.from(`bob:${URL_PASSWORD}`).toString('base64'))
    const fields = await (await chat('quirky', 'quote-key-fields')).text()
    expect(fields).toContain('[REDACTED]')
    expect(fields).not.toContain(PROVIDER_KEY)
    // Relayed natively (a Responses stream to an OpenAI target), the provider's failure event too.
    const native = await fetch(`${gw.baseURL}/responses`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'quirky', input: 'hi', stream: true }),
    })
    const nativeEvents = await native.text()
    expect(nativeEvents).toContain('response.failed')
    expect(nativeEvents).toContain('[REDACTED]')
    expect(nativeEvents).not.toContain(PROVIDER_KEY)
    const midstream = await chat('quirky', 'quote-key-midstream', { stream: true })
    const events = await midstream.text()
    expect(events).toContain('"code":"quota"')
    expect(events).toContain('[REDACTED]')
    expect(events).not.toContain(PROVIDER_KEY)
    // Any logged string at any depth, not only fields with known names.
    gw.gateway.log.info({ deep: { er: [`master ${MASTER_KEY} and ${PROVIDER_KEY}`] } }, `also ${MASTER_KEY}`)
    await Bun.sleep(50)
    const text = logs.lines.join('')
    expect(text).toContain('provider rejected the gateway credentials')
    expect(text).toContain('[REDACTED]')
    expect(text).not.toContain(PROVIDER_KEY)
    expect(text).not.toContain(MASTER_KEY)
  })
})

describe('bug 4 and a weakness: what clients put in bodies', () => {
  test('100,000 levels of nesting: a quick 400, nothing sent upstream', async () => {
    const sent = upstream.requests.length
    const deep = '['.repeat(100_000) + ']'.repeat(100_000)
    const started = performance.now()
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: `{"model":"quirky","messages":[{"role":"user","content":"hi"}],"extra":${deep}}`,
    })
    const error = await expectError(res, 400, 'invalid_value')
    expect(error.message).toContain('nested')
    expect(performance.now() - started).toBeLessThan(500)
    expect(upstream.requests.length).toBe(sent)
  })

  test('the whole family of upstream-URL parameters is refused, at any depth; image URLs are data', async () => {
    for (const name of ['api_base_url', 'azure_endpoint', 'OPENAI_BASE_URL', 'openai_api_base', 'endpoint_url', 'proxy_url', 'apiHost']) {
      const res = await chat('quirky', 'hi', { metadata_x: { nested: [{ [name]: 'http://evil.example/' }] } })
      const error = await expectError(res, 400, 'forbidden_parameter')
      expect(error.param).toBe(`metadata_x.nested[0].${name}`)
    }
    const image = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'quirky',
        messages: [{ role: 'user', content: [{ type: 'text', text: 'what is it' }, { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }] }],
      }),
    })
    expect(image.status).toBe(200)
  })
})

describe('weaknesses: bodies too slow, responses too big, errors too talkative', () => {
  /** Sends the head and the start of a body that declares more, and collects the reply until the socket closes. */
  async function trickle(path: string, token: string, declared: number, start: string) {
    const socket = connect(Number(new URL(gw.origin).port), '127.0.0.1')
    await new Promise((resolve) => socket.once('connect', resolve))
    let text = ''
    socket.on('data', (d) => (text += d.toString()))
    const closed = new Promise((resolve) => socket.once('close', resolve))
    socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${declared}\r\n\r\n${start}`)
    return {
      reply: async () => {
        await Promise.race([closed, Bun.sleep(5_000)])
        socket.destroy()
        return text
      },
    }
  }

  test('a trickled body is a 408 at the deadline, and counts against max_parallel from the moment the key is known', async () => {
    const started = performance.now()
    const slow = await trickle('/v1/chat/completions', key, 100_000, '{"model":"qu')
    await Bun.sleep(200)
    // The key's one slot is held by the trickler: a second request is refused at once.
    await expectError(await chat('quirky', 'hello'), 429, 'rate_limit_exceeded')
    const reply = await slow.reply()
    const elapsed = performance.now() - started
    expect(reply).toStartWith('HTTP/1.1 408')
    expect(reply).toContain('"code":"request_timeout"')
    expect(elapsed).toBeGreaterThan(900)
    expect(elapsed).toBeLessThan(3_000)
    expect((await chat('quirky', 'hello')).status).toBe(200)
  })

  test('an admin body is held to the same deadline', async () => {
    const reply = await (await trickle('/admin/v1/keys', MASTER_KEY, 5_000, '{"na')).reply()
    expect(reply).toStartWith('HTTP/1.1 408')
    expect(reply).toContain('"code":"request_timeout"')
  })

  test('an upstream body over the cap is a 502, with content-length or chunked', async () => {
    await expectError(await chat('quirky', 'big'), 502, 'upstream_response_too_large')
    await expectError(await chat('quirky', 'big-chunked'), 502, 'upstream_response_too_large')
    await Bun.sleep(0) // a request is accounted on the turn after its response
    expect(gw.gateway.metrics.inflight).toBe(0)
  })

  test('a network error tells the client no internal host name', async () => {
    await gw.admin('POST', '/providers', { name: 'nowhere', type: 'openai', base_url: 'http://127.0.0.1:9/v1', api_key: 'x-unused-key' })
    await gw.admin('POST', '/models', { name: 'nowhere', targets: [{ provider: 'nowhere', model: 'gpt-4o' }] })
    const error = await expectError(await chat('nowhere', 'hi'), 502, 'upstream_unreachable')
    expect(error.message).toBe("Could not reach the upstream provider 'nowhere'.")
    await Bun.sleep(50)
    expect(logs.lines.join('')).toContain('upstream attempt failed') // the detail is in the log
  })

  test('PR5 (d): an upstream 500 is the answer to this request, not retried; a 503 is', async () => {
    const key2 = (await gw.admin('POST', '/keys', { name: 'retries' })).key
    const before = fake.requests.length
    const res = await chat('standard', 'fail-500', {}, key2)
    expect(res.status).toBe(500)
    expect(res.headers.get('x-conduit-attempts')).toBe('1')
    expect(fake.requests.length - before).toBe(1)
    const retried = await chat('standard', `fail-once-503:${crypto.randomUUID()}`, {}, key2)
    expect(retried.status).toBe(200)
    expect(retried.headers.get('x-conduit-attempts')).toBe('2')
  })
})

describe('weaknesses: overload and floods', () => {
  test('past max in-flight, requests are shed at once with 503 and Retry-After, and counted', async () => {
    const small = await startGateway({ maxInflight: 20 })
    try {
      await small.admin('POST', '/providers', { name: 'q', type: 'openai', base_url: upstream.url, api_key: PROVIDER_KEY })
      await small.admin('POST', '/models', { name: 'q', targets: [{ provider: 'q', model: 'gpt-4o' }] })
      const k = (await small.admin('POST', '/keys', { name: 'k' })).key
      const open = (content: string) =>
        fetch(`${small.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'q', messages: [{ role: 'user', content }], stream: true }),
        })
      // 20 slow streams fill the gateway; 80 more arrive while they run.
      const streams = await Promise.all(Array.from({ length: 20 }, () => open('slow:2000')))
      const started = performance.now()
      const burst = await Promise.all(Array.from({ length: 80 }, () => open('hello')))
      const refusedWithin = performance.now() - started
      for (const shed of burst) {
        expect(shed.headers.get('retry-after')).toBe('1')
        await expectError(shed, 503, 'server_overloaded')
      }
      expect(refusedWithin).toBeLessThan(1_000) // all 80 answered while the 20 streams still run
      for (const s of streams) expect(await s.text()).toContain('[DONE]')
      expect((await open('hello')).status).toBe(200)
      const metrics = await (await fetch(`${small.origin}/metrics`)).text()
      expect(metrics).toContain('conduit_shed_requests_total 80')
      console.log(`load shedding: 80 of 100 shed, all answered in ${refusedWithin.toFixed(0)} ms`)
    } finally {
      await small.close()
    }
  })

  test('a flood of well-formed unknown keys does not evict the real ones from the key cache', async () => {
    const cached = await startGateway({ plugins: [{ use: 'builtin:auth', config: { cacheSize: 50 } }] })
    try {
      const real = await Promise.all(Array.from({ length: 20 }, (_, i) => cached.admin('POST', '/keys', { name: `real-${i}` })))
      const models = (k: string) => fetch(`${cached.baseURL}/models`, { headers: { authorization: `Bearer ${k}` } })
      for (const k of real) expect((await models(k.key)).status).toBe(200)
      for (let i = 0; i < 200; i++) expect((await models(generateVirtualKey())).status).toBe(401)
      const store = cached.gateway.store
      const lookup = store.findKeyByHash.bind(store)
      let queries = 0
      store.findKeyByHash = (hash: string) => {
        queries++
        return lookup(hash)
      }
      for (const k of real) expect((await models(k.key)).status).toBe(200)
      expect(queries).toBe(0)
    } finally {
      await cached.close()
    }
  })
})

describe('a provider secret this instance cannot open', () => {
  test('keeps that provider as it last opened instead of failing every request', async () => {
    await gw.admin('POST', '/providers', { name: 'rotated-away', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
    await gw.admin('POST', '/models', { name: 'rotated-away', targets: [{ provider: 'rotated-away', model: 'gpt-4o' }] })
    // As if another instance re-sealed it with a key this one does not have yet.
    await gw.gateway.store.sql`UPDATE providers SET api_key_secret = ${'v2.k9.AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA'} WHERE name = ${'rotated-away'}`
    await gw.admin('PATCH', '/models/rotated-away', { routing: { retries: 0 } }) // any admin change reloads the catalog
    expect((await chat('standard', 'hello')).status).toBe(200)
    // The catalog read it when it was created: that config serves on, and the log says why the new one does not.
    expect((await chat('rotated-away', 'hello')).status).toBe(200)
    await Bun.sleep(50)
    expect(logs.lines.join('')).toContain('provider secret does not decrypt')
  })
})

describe('a closed stdout', () => {
  test('costs the logs, not the process (EPIPE used to kill it on the next line)', async () => {
    const dataDir = mkdtempSync(`${tmpdir()}/conduit-epipe-`)
    const running = await startProcess({ CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER_KEY, CONDUIT_WORKERS: '1', CONDUIT_LOG_LEVEL: 'debug' })
    try {
      await (running.proc.stdout as ReadableStream).cancel() // the reader of the gateway's output goes away
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`${running.origin}/v1/models`, { headers: { authorization: 'Bearer condt_wrong' } })
        expect(res.status).toBe(401)
        await Bun.sleep(15) // let the batched log writer try to write
      }
      expect((await fetch(`${running.origin}/health`)).status).toBe(200)
      expect(running.proc.exitCode).toBeNull()
    } finally {
      await stopProcess(running.proc)
    }
  })
})

describe("a bug in the gateway's own code", () => {
  test('a route that throws answers our 500 envelope, never a page with the error and its stack; the error is logged', async () => {
    const logs = { level: 'error', lines: [] as string[] }
    const own = await startGateway({}, logs)
    try {
      const pipeline = own.gateway.pipeline
      // A fault injected where a bug would be, thrown or rejected, under a native route (chat: Bun's router calls the
      // pipeline) and one Elysia serves (models).
      const routes = [['POST', '/v1/chat/completions'], ['GET', '/v1/models']] as const
      const bug = () => new Error('bug at /srv/conduit/src/secret-path.ts:12')
      let calls = 0
      pipeline.handle = () => {
        if (calls++ < routes.length) throw bug()
        return Promise.reject(bug())
      }
      for (const [method, path] of [...routes, ...routes]) {
        const res = await fetch(`${own.origin}${path}`, { method, headers: { authorization: 'Bearer condt_x', 'content-type': 'application/json' }, body: method === 'POST' ? '{}' : undefined })
        const text = await res.text()
        expect([path, res.status, res.headers.get('content-type')]).toEqual([path, 500, 'application/json'])
        expect(text).not.toContain('secret-path')
        const body = JSON.parse(text)
        validateSchema('ErrorResponse', body)
        expect(body.error.code).toBe('internal_error')
      }
      const logged = logs.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'unhandled HTTP error')
      expect(logged.length).toBe(4)
      expect(logged[0].err.message).toContain('secret-path')
    } finally {
      await own.close()
    }
  })
})
