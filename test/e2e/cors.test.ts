import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { loadConfig } from '../../src/config/config.ts'
import { createApp } from '../../src/http/app.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { exchange } from '../helpers/raw-http.ts'

/** SE10: browsers on the configured origins may call /v1; everyone else, and the admin API, get no CORS at all. */
const APP = 'https://app.example.com'
const EVIL = 'https://evil.example.net'
/** What the OpenAI SDK's preflight asks for (openai 4.x–7.x in a browser, dangerouslyAllowBrowser). */
const SDK_HEADERS = 'authorization, content-type, openai-organization, openai-project, x-stainless-arch, x-stainless-lang, x-stainless-os, ' +
  'x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout'

let fake: FakeOpenAI
let gw: TestGateway
let plain: TestGateway
let key: string

beforeAll(async () => {
  fake = await startFakeOpenAI()
  gw = await startGateway({ corsOrigins: [APP, 'http://localhost:3000'] })
  plain = await startGateway()
  for (const g of [gw, plain]) {
    await g.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
    await g.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  }
  key = (await gw.admin('POST', '/keys', { name: 'browser', rpm: 1000, tpm: 1_000_000 })).key
})

afterAll(async () => {
  await gw.close()
  await plain.close()
  await fake.stop()
})

const preflight = (g: TestGateway, path: string, origin: string, requestHeaders = SDK_HEADERS) =>
  fetch(g.origin + path, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': requestHeaders } })
const chat = (origin: string | null, content = 'Hi', extra: Record<string, unknown> = {}, g = gw) =>
  fetch(`${g.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(origin ? { origin } : {}) },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], ...extra }),
  })
const corsHeaders = (res: Response) => Object.fromEntries([...res.headers].filter(([name]) => name.startsWith('access-control-')))
const varyOf = (res: Response) => (res.headers.get('vary') ?? '').toLowerCase().split(/\s*,\s*/)

/** The allowed origin, echoed exactly, never `*`, never with credentials; every header our response has, exposed. */
function expectAllowed(res: Response, origin = APP) {
  expect(res.headers.get('access-control-allow-origin')).toBe(origin)
  expect(res.headers.get('access-control-allow-credentials')).toBeNull()
  expect(varyOf(res)).toContain('origin')
  const exposed = (res.headers.get('access-control-expose-headers') ?? '').split(/\s*,\s*/)
  const ours = [...res.headers.keys()].filter((name) => name.startsWith('x-') || name === 'retry-after')
  expect(ours.filter((name) => !exposed.includes(name))).toEqual([])
}

describe('preflight', () => {
  test('an allowed origin: 204, its exact origin, the methods, the SDK headers echoed, a max age', async () => {
    const res = await preflight(gw, '/v1/chat/completions', APP)
    expect(res.status).toBe(204)
    expect(corsHeaders(res)).toEqual({
      'access-control-allow-origin': APP,
      'access-control-allow-methods': 'GET, POST, DELETE, OPTIONS',
      'access-control-allow-headers': SDK_HEADERS,
      'access-control-max-age': '600',
    })
    expect(varyOf(res)).toEqual(['origin', 'access-control-request-headers'])
    expect((await preflight(gw, '/v1/models', 'http://localhost:3000')).headers.get('access-control-allow-origin')).toBe('http://localhost:3000')
  })

  test('an evil origin, a near miss or a null origin: no allow-origin', async () => {
    for (const origin of [EVIL, 'https://app.example.com.evil.net', 'http://app.example.com', 'https://APP.example.com', 'null']) {
      const res = await preflight(gw, '/v1/chat/completions', origin)
      expect(corsHeaders(res)).toEqual({})
      expect(varyOf(res)).toContain('origin')
    }
  })

  test('requested headers that are not a list of header names are not echoed', async () => {
    const res = await preflight(gw, '/v1/chat/completions', APP, 'authorization, x-a b')
    expect(res.headers.get('access-control-allow-origin')).toBe(APP)
    expect(res.headers.get('access-control-allow-headers')).toBeNull()
  })

  test('the admin API stays same-origin, even for an allowed origin', async () => {
    expect(corsHeaders(await preflight(gw, '/admin/v1/keys', APP))).toEqual({})
    const res = await fetch(`${gw.origin}/admin/v1/keys`, { headers: { origin: APP, authorization: `Bearer ${MASTER_KEY}` } })
    expect(res.status).toBe(200)
    expect(corsHeaders(res)).toEqual({})
  })
})

describe('actual requests from an allowed origin', () => {
  test('a completion carries the origin, Vary and every x-ratelimit-*, x-request-id and x-conduit-* header exposed', async () => {
    const res = await chat(APP)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-ratelimit-remaining-requests')).not.toBeNull()
    expectAllowed(res)
  })

  test('errors too: a missing key, an unknown model, a 429, an unknown /v1 URL, a path that does not decode', async () => {
    const noKey = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { origin: APP }, body: '{}' })
    const unknownModel = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { origin: APP, authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
    })
    const limited = await chat(APP, 'fail-429')
    const unknownUrl = await fetch(`${gw.baseURL}/nope`, { headers: { origin: APP } })
    const undecodable = await fetch(`${gw.baseURL}/models/%ZZ`, { headers: { origin: APP } })
    for (const [res, status] of [[noKey, 401], [unknownModel, 404], [limited, 429], [unknownUrl, 404], [undecodable, 400]] as const) {
      expect(res.status).toBe(status)
      expectAllowed(res)
      validateSchema('ErrorResponse', await res.json())
    }
  })

  test('a spent budget tells the browser SDK not to retry: x-should-retry is exposed with the 429', async () => {
    await gw.admin('POST', '/models', { name: 'priced', targets: [{ provider: 'fake', model: 'gpt-4o', price: { input: 1000, output: 1000 } }] })
    const poor = (await gw.admin('POST', '/keys', { name: 'poor', budget: { usd: 0.0001, period: 'total' } })).key
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { origin: APP, authorization: `Bearer ${poor}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'priced', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 100 }),
    })
    expect([res.status, res.headers.get('x-should-retry')]).toEqual([429, 'false'])
    expectAllowed(res)
  })

  test('a Host header that is not a host, with an Origin: 400 invalid_host, not a 500, on the routes Bun serves natively too', async () => {
    for (const g of [gw, plain]) {
      const { port } = new URL(g.origin)
      for (const [method, path] of [['GET', '/health'], ['GET', '/v1/models'], ['POST', '/v1/chat/completions'], ['GET', '/admin/v1/keys'], ['GET', '/v1/realtime?model=m']]) {
        const answer = await exchange(Number(port), `${method} ${path} HTTP/1.1\r\nHost: a?\r\nOrigin: ${APP}\r\nauthorization: Bearer ${key}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}`)
        expect({ path, status: answer.slice(9, 12), code: /"code":"(\w+)"/.exec(answer)?.[1] }).toEqual({ path, status: '400', code: 'invalid_host' })
      }
    }
  })

  test('an SSE stream carries the headers and still streams: the first chunk arrives long before the last', async () => {
    const started = performance.now()
    const res = await chat(APP, 'slow-stream:60', { stream: true })
    expectAllowed(res)
    expect(res.headers.get('content-type')).toStartWith('text/event-stream')
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let text = ''
    let firstChunkAt = 0
    for (let part = await reader.read(); !part.done; part = await reader.read()) {
      text += decoder.decode(part.value, { stream: true })
      if (!firstChunkAt && text.includes('"content"')) firstChunkAt = performance.now() - started
    }
    const total = performance.now() - started
    expect(text).toContain('data: [DONE]')
    // 20 chunks 60 ms apart: a buffered relay would deliver everything at once, after ≥ 1.1 s.
    expect(firstChunkAt).toBeLessThan(total / 2)
  })

  test('a credentialed request (cookies) gets no wildcard and no allow-credentials', async () => {
    const res = await fetch(`${gw.baseURL}/models`, { headers: { origin: APP, authorization: `Bearer ${key}`, cookie: 'session=1' } })
    expect(res.status).toBe(200)
    expectAllowed(res)
  })
})

describe('without an allowed origin', () => {
  test('an evil origin gets its answer but no allow-origin (the browser withholds it); Vary still says Origin', async () => {
    const res = await chat(EVIL)
    expect(res.status).toBe(200)
    expect(corsHeaders(res)).toEqual({})
    expect(varyOf(res)).toContain('origin')
  })

  test('no Origin header (server-to-server): nothing added', async () => {
    const res = await chat(null)
    expect(corsHeaders(res)).toEqual({})
    expect(res.headers.get('vary')).toBeNull()
  })

  test('CORS not configured: no access-control header on any answer, and no hook registered', async () => {
    for (const res of [await preflight(plain, '/v1/chat/completions', APP), await chat(APP, 'Hi', {}, plain)]) {
      expect(corsHeaders(res)).toEqual({})
      expect(res.headers.get('vary')).toBeNull()
    }
    const hooks = (origins?: string[]) => (createApp(plain.gateway, { maxBodyBytes: 1024, bodyTimeoutMs: 1000, corsOrigins: origins }) as any).event.request?.length ?? 0
    expect(hooks([APP])).toBe(hooks() + 1)
    expect(hooks([])).toBe(hooks())
  })
})

describe('configuration', () => {
  test('CONDUIT_CORS_ORIGINS (comma-separated) beats the file; origins are normalised; a path or * stops the start', async () => {
    const config = await loadConfig([], { CONDUIT_CORS_ORIGINS: ' https://app.example.com/ ,http://localhost:3000,, HTTPS://Caps.Example.com:443' })
    expect(config.corsOrigins).toEqual(['https://app.example.com', 'http://localhost:3000', 'https://caps.example.com'])
    expect((await loadConfig([], {})).corsOrigins).toEqual([])
    for (const bad of ['*', 'https://app.example.com/path', 'app.example.com', 'ftp://files.example.com', 'https://user@app.example.com']) {
      await expect(loadConfig([], { CONDUIT_CORS_ORIGINS: bad })).rejects.toThrow('Invalid CORS origin')
    }
  })

  test('cors.origins in the config file', async () => {
    const file = `${plain.dataDir}/conduit.json`
    await Bun.write(file, JSON.stringify({ cors: { origins: ['https://from-file.example.com'] } }))
    expect((await loadConfig(['--config', file], {})).corsOrigins).toEqual(['https://from-file.example.com'])
    expect((await loadConfig(['--config', file], { CONDUIT_CORS_ORIGINS: APP })).corsOrigins).toEqual([APP])
  })
})
