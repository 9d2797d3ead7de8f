import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import http from 'node:http'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'

/** The Web UI's server side, without a browser: sign-in, cookie, CSRF, throttle, virtual-key scope, headers, the bundle. */
let gw: TestGateway
let fake: FakeOpenAI
let mine: { id: string; key: string; name: string }
let other: { id: string; key: string; name: string }

/** From a chosen loopback address: the sign-in throttle counts per address. */
function call(method: string, path: string, options: { from?: string; cookie?: string; csrf?: string; body?: unknown; headers?: Record<string, string> } = {}) {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
  const headers: Record<string, string> = { ...options.headers }
  if (options.cookie) headers.cookie = options.cookie
  if (options.csrf) headers['x-conduit-csrf'] = options.csrf
  if (payload !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) })
  const { port } = new URL(gw.origin)
  return new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: any }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, localAddress: options.from ?? '127.0.0.1', agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => (text += chunk))
      res.on('end', () => {
        let body: any = text
        try {
          body = JSON.parse(text)
        } catch {}
        resolve({ status: res.statusCode!, headers: res.headers, body })
      })
    })
    req.on('error', reject)
    req.end(payload)
  })
}

async function signIn(key: string, from = '127.0.0.1', headers: Record<string, string> = {}) {
  const res = await call('POST', '/ui/api/session', { body: { key }, from, headers })
  const setCookie = res.headers['set-cookie']?.[0] ?? ''
  return { res, setCookie, cookie: setCookie.split(';')[0]!, csrf: res.body?.csrf_token as string }
}

beforeAll(async () => {
  fake = await startFakeOpenAI()
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'allowed', targets: [{ provider: 'fake', model: 'gpt-4o-mini', price: { input: 1, output: 2 } }] })
  await gw.admin('POST', '/models', { name: 'forbidden', targets: [{ provider: 'fake', model: 'gpt-4o-mini' }] })
  mine = await gw.admin('POST', '/keys', { name: 'mine', allowed_models: ['allowed'] })
  other = await gw.admin('POST', '/keys', { name: 'other' })
  for (const key of [mine, other]) {
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'allowed', messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(200)
  }
  await gw.gateway.ledger.flush()
  await gw.gateway.records!.flush()
  await gw.gateway.timeseries.flush()
})

afterAll(async () => {
  await gw.close()
  await fake.stop()
})

describe('sign-in and the session cookie', () => {
  test('the master key becomes an HttpOnly, SameSite=Strict cookie of 12 h; the store keeps only its hash', async () => {
    const { res, setCookie, cookie, csrf } = await signIn(MASTER_KEY)
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({ object: 'session', role: 'admin', key: null })
    expect(setCookie).toMatch(/^conduit_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=43200$/)
    expect(csrf).toMatch(/^[0-9a-f]{64}$/)
    const token = cookie.split('=')[1]!
    const rows = await gw.gateway.store.sql`SELECT * FROM ui_sessions`
    expect(JSON.stringify(rows)).not.toContain(token)
    expect(JSON.stringify(rows)).not.toContain(MASTER_KEY)
    expect(rows.some((r: any) => Number(r.expires_at) - Number(r.created_at) === 12 * 3_600_000)).toBe(true)
  })

  test('Secure behind TLS: a proxy saying X-Forwarded-Proto: https gets a Secure cookie', async () => {
    const { setCookie } = await signIn(MASTER_KEY, '127.0.0.1', { 'x-forwarded-proto': 'https' })
    expect(setCookie).toContain('; Secure')
  })

  test('a wrong key: 401 with a message; the 11th wrong key in a minute from one address: 429, the right key too; other addresses unaffected', async () => {
    const from = '127.0.0.77'
    const statuses: number[] = []
    for (let i = 0; i < 11; i++) statuses.push((await signIn(`wrong-${i}`, from)).res.status)
    expect(statuses).toEqual([...Array(10).fill(401), 429])
    const first = await signIn('wrong', '127.0.0.78')
    expect(first.res.body.error).toMatchObject({ code: 'invalid_api_key', type: 'authentication_error' })
    const locked = await signIn(MASTER_KEY, from)
    expect(locked.res.status).toBe(429)
    expect(locked.res.headers['retry-after']).toBeDefined()
    expect((await signIn(MASTER_KEY, '127.0.0.79')).res.status).toBe(201)
  })

  test('the admin API takes the cookie; a change also needs the CSRF header (403 without it, nothing changed)', async () => {
    const { cookie, csrf } = await signIn(MASTER_KEY)
    expect((await call('GET', '/admin/v1/keys', { cookie })).status).toBe(200)
    const refused = await call('POST', '/admin/v1/keys', { cookie, body: { name: 'csrf-probe' } })
    expect(refused.status).toBe(403)
    expect(refused.body.error.code).toBe('csrf_failed')
    const wrong = await call('POST', '/admin/v1/keys', { cookie, csrf: 'f'.repeat(64), body: { name: 'csrf-probe' } })
    expect(wrong.status).toBe(403)
    expect((await gw.admin('GET', '/keys')).data.some((k: any) => k.name === 'csrf-probe')).toBe(false)
    const made = await call('POST', '/admin/v1/keys', { cookie, csrf, body: { name: 'csrf-probe' } })
    expect(made.status).toBe(201)
  })

  test('sign-out needs the CSRF header, deletes the session and clears the cookie; the old cookie is refused after', async () => {
    const { cookie, csrf } = await signIn(MASTER_KEY)
    expect((await call('DELETE', '/ui/api/session', { cookie })).status).toBe(403)
    const out = await call('DELETE', '/ui/api/session', { cookie, csrf })
    expect(out.status).toBe(200)
    expect(out.headers['set-cookie']?.[0]).toContain('Max-Age=0')
    expect((await call('GET', '/ui/api/session', { cookie })).status).toBe(401)
    expect((await call('GET', '/admin/v1/providers', { cookie })).status).toBe(401)
  })

  test('a forged or expired cookie is refused; a bearer token still decides when both are sent', async () => {
    expect((await call('GET', '/admin/v1/keys', { cookie: 'conduit_session=forged' })).status).toBe(401)
    const { cookie } = await signIn(MASTER_KEY)
    await gw.gateway.store.sql`UPDATE ui_sessions SET expires_at = ${Date.now() - 1}`
    expect((await call('GET', '/admin/v1/keys', { cookie })).body.error.code).toBe('session_expired')
    const both = await call('GET', '/admin/v1/keys', { cookie, headers: { authorization: `Bearer ${MASTER_KEY}` } })
    expect(both.status).toBe(200)
  })
})

describe('a virtual key signs in read-only and sees only its own', () => {
  test('its models, its key, its usage, its requests and timeseries; nothing of the other key; every change refused', async () => {
    const { res, cookie, csrf } = await signIn(mine.key)
    expect(res.body).toMatchObject({ role: 'key', key: { id: mine.id, name: 'mine' } })
    const models = await call('GET', '/admin/v1/models', { cookie })
    expect(models.body.data.map((m: any) => m.name)).toEqual(['allowed'])
    expect(models.body.data[0].targets).toBeUndefined() // where it routes stays private
    // Only its own key's activity is read (each key's is a query of the store).
    const store = gw.gateway.store
    const lastUsedAt = store.lastUsedAt.bind(store)
    const read: string[] = []
    store.lastUsedAt = (keyId) => {
      read.push(keyId)
      return lastUsedAt(keyId)
    }
    const keys = await call('GET', '/admin/v1/keys', { cookie }).finally(() => (store.lastUsedAt = lastUsedAt))
    expect(keys.body.data.map((k: any) => k.id)).toEqual([mine.id])
    expect(read).toEqual([mine.id])
    expect((await call('GET', `/admin/v1/keys/${other.id}`, { cookie })).status).toBe(404)
    expect((await call('GET', `/admin/v1/keys/${mine.id}`, { cookie })).status).toBe(200)
    const usage = await call('GET', `/admin/v1/usage?key=${other.id}`, { cookie })
    expect(usage.body.total.requests).toBe(1)
    expect(usage.body.by_key.map((r: any) => r.key)).toEqual([mine.id])
    const requests = await call('GET', `/admin/v1/requests?key=${other.id}`, { cookie })
    expect(requests.body.data.map((r: any) => r.key_id)).toEqual([mine.id])
    const all = await gw.admin('GET', '/requests')
    const theirs = all.data.find((r: any) => r.key_id === other.id)
    expect((await call('GET', `/admin/v1/requests/${theirs.id}`, { cookie })).status).toBe(404)
    const series = await call('GET', '/admin/v1/metrics/timeseries', { cookie })
    expect(series.body.totals.requests).toBe(1)

    for (const [method, path] of [
      ['GET', '/admin/v1/providers'],
      ['GET', '/admin/v1/provider-types'],
      ['POST', '/admin/v1/keys'],
      ['PATCH', `/admin/v1/keys/${mine.id}`],
      ['DELETE', `/admin/v1/keys/${other.id}`],
      ['POST', `/admin/v1/providers/fake/test`],
    ] as const) {
      const refused = await call(method, path, { cookie, csrf, body: method === 'GET' ? undefined : { name: 'x' } })
      expect({ method, path, status: refused.status, code: refused.body.error?.code }).toEqual({ method, path, status: 403, code: 'permission_denied' })
    }
    // Still only the keys made before (the CSRF test's included): nothing created, renamed or deleted.
    expect((await gw.admin('GET', '/keys')).data.map((k: any) => k.name).toSorted()).toEqual(['csrf-probe', 'mine', 'other'])
  })

  test('a disabled key cannot sign in, and its open session stops working', async () => {
    const { cookie } = await signIn(other.key)
    expect((await call('GET', '/admin/v1/keys', { cookie })).status).toBe(200)
    await gw.admin('PATCH', `/keys/${other.id}`, { enabled: false })
    expect((await call('GET', '/admin/v1/keys', { cookie })).status).toBe(401)
    expect((await signIn(other.key, '127.0.0.90')).res.status).toBe(401)
    await gw.admin('PATCH', `/keys/${other.id}`, { enabled: true })
  })
})

describe('what /ui serves', () => {
  test('the page: CSP without inline scripts or styles, X-Frame-Options DENY, no-store, no secret; assets from this origin only', async () => {
    const page = await fetch(`${gw.origin}/ui/`)
    expect(page.status).toBe(200)
    const csp = page.headers.get('content-security-policy')!
    expect(csp).toContain("script-src 'self'")
    expect(csp).toContain("frame-ancestors 'none'")
    expect(csp).not.toContain('unsafe-inline')
    expect(csp).not.toContain('unsafe-eval')
    expect(page.headers.get('x-frame-options')).toBe('DENY')
    expect(page.headers.get('x-content-type-options')).toBe('nosniff')
    expect(page.headers.get('cache-control')).toBe('no-store')
    const html = await page.text()
    // No inline script or style, and nothing fetched from anywhere else (works offline).
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/)
    expect(html).not.toMatch(/<style|style=/)
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!)
    expect(assets.length).toBe(3) // the script, the stylesheet, the icon
    for (const asset of assets) {
      expect(asset).toMatch(/^\/ui\/assets\/[\w.-]+$/)
      const res = await fetch(`${gw.origin}${asset}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('cache-control')).toContain('immutable')
      const text = await res.text()
      expect(text).not.toContain(MASTER_KEY)
      expect(text).not.toMatch(/https?:\/\/(?!www\.w3\.org)[a-z0-9.-]+\.[a-z]{2,}\/[\w/.-]*\.(?:js|css|woff2?)/i)
      const again = await fetch(`${gw.origin}${asset}`, { headers: { 'if-none-match': res.headers.get('etag')! } })
      expect(again.status).toBe(304)
    }
    // Client-side routes load the same page; unknown assets are a JSON 404.
    expect((await fetch(`${gw.origin}/ui/requests/req_x`)).headers.get('content-type')).toContain('text/html')
    const missing = await fetch(`${gw.origin}/ui/assets/nope.js`)
    expect(missing.status).toBe(404)
    expect(((await missing.json()) as any).error.code).toBe('not_found')
  })

  test("another site's page cannot sign the browser in: a form's text/plain body is 415, a foreign Origin 403, no cookie", async () => {
    // What a cross-site form with enctype="text/plain" sends: a body that parses as JSON, without a JSON type.
    const form = await fetch(`${gw.origin}/ui/api/session`, { method: 'POST', headers: { 'content-type': 'text/plain', origin: 'http://127.0.0.2:8080' }, body: `{"key":"${other.key}","x":"="}` })
    expect([form.status, form.headers.get('set-cookie'), ((await form.json()) as any).error.code]).toEqual([415, null, 'unsupported_media_type'])
    const foreign = await call('POST', '/ui/api/session', { body: { key: other.key }, headers: { origin: 'http://127.0.0.2:8080' } })
    expect([foreign.status, foreign.headers['set-cookie'], foreign.body.error.code]).toEqual([403, undefined, 'cross_origin_sign_in'])
    // The UI's own page names this host.
    const own = await signIn(other.key, '127.0.0.1', { origin: gw.origin })
    expect(own.res.status).toBe(201)
  })

  test('a sign-in body that is not JSON, or has no key, is a 400 in the OpenAI envelope', async () => {
    const res = await call('POST', '/ui/api/session', { body: { nope: 1 } })
    expect(res.status).toBe(400)
    expect(res.body.error).toMatchObject({ code: 'missing_required_parameter', param: 'key', type: 'invalid_request_error' })
  })

  test('the UI type-checks with DOM types of its own (the server tsconfig excludes src/ui)', () => {
    const tsc = Bun.spawnSync(['bunx', 'tsc', '--noEmit', '-p', 'src/ui'], { stdout: 'pipe', stderr: 'pipe' })
    expect(tsc.stdout.toString() + tsc.stderr.toString()).toBe('')
    expect(tsc.exitCode).toBe(0)
  }, 60_000)
})
