import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import http from 'node:http'
import { adminRoutes } from '../../src/http/admin-routes.ts'
import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'
import { exchange } from '../helpers/raw-http.ts'
import { validateSchema } from '../helpers/openapi.ts'

const OPENAI = 'https://api.openai.com/v1'

interface Answer {
  status: number
  body: any
}

let gw: TestGateway
let virtualKey: string
/** Objects the read and patch routes act on (never deleted). */
let fixture: { provider: string; model: string; key: string; request: string }

/**
 * One admin request from a chosen loopback address (127.0.0.0/8 is all loopback): the wrong-key throttle
 * counts per address, so each route's refusals come from an address of their own.
 */
function admin(from: string, method: string, path: string, authorization: string | null, body?: unknown): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body)
  const headers: Record<string, string> = {}
  if (authorization !== null) headers.authorization = authorization
  if (payload !== undefined) Object.assign(headers, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) })
  const { port } = new URL(gw.origin)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: `/admin/v1${path}`, headers, localAddress: from, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode!, body: text ? JSON.parse(text) : null }))
    })
    req.on('error', reject)
    req.end(payload)
  })
}
const asMaster = (method: string, path: string, body?: unknown) => admin('127.0.0.1', method, path, `Bearer ${MASTER_KEY}`, body)

let serial = 0
const unique = (what: string) => `iso-${what}-${++serial}`
const providerBody = () => ({ name: unique('provider'), type: 'openai', base_url: OPENAI, api_key: 'sk-isolation-test' })
const modelBody = () => ({ name: unique('model'), targets: [{ provider: fixture.provider, model: 'gpt-4o' }] })
/** A fresh object for a DELETE to remove: the refused attempts must leave it, the master's must remove it. */
const fresh = async (kind: string, body: unknown) => (await asMaster('POST', `/${kind}`, body)).body.id as string

/**
 * Every admin route with what the master's call needs to succeed. A refused attempt sends exactly the same
 * request, so had it gone through, the master's would fail: a second POST of the name is a 409, a second
 * DELETE a 404.
 */
const ROUTES: Record<string, () => Promise<{ path: string; body?: unknown }>> = {
  'POST /providers': async () => ({ path: '/providers', body: providerBody() }),
  'GET /providers': async () => ({ path: '/providers' }),
  'GET /providers/:id': async () => ({ path: `/providers/${fixture.provider}` }),
  'PATCH /providers/:id': async () => ({ path: `/providers/${fixture.provider}`, body: { api_key: `sk-patched-${++serial}` } }),
  'DELETE /providers/:id': async () => ({ path: `/providers/${await fresh('providers', providerBody())}` }),
  'POST /models': async () => ({ path: '/models', body: modelBody() }),
  'GET /models': async () => ({ path: '/models' }),
  'GET /models/:id': async () => ({ path: `/models/${fixture.model}` }),
  'PATCH /models/:id': async () => ({ path: `/models/${fixture.model}`, body: { limits: { rpm: ++serial } } }),
  'DELETE /models/:id': async () => ({ path: `/models/${await fresh('models', modelBody())}` }),
  'POST /keys': async () => ({ path: '/keys', body: { name: unique('key') } }),
  'GET /keys': async () => ({ path: '/keys' }),
  'GET /keys/:id': async () => ({ path: `/keys/${fixture.key}` }),
  'PATCH /keys/:id': async () => ({ path: `/keys/${fixture.key}`, body: { rpm: ++serial } }),
  'DELETE /keys/:id': async () => ({ path: `/keys/${await fresh('keys', { name: unique('key') })}` }),
  'GET /usage': async () => ({ path: '/usage' }),
  'GET /provider-types': async () => ({ path: '/provider-types' }),
  // Offline the provider cannot be reached: the test still answers 200, saying so.
  'POST /providers/:id/test': async () => ({ path: `/providers/${fixture.provider}/test`, body: { model: 'gpt-4o' } }),
  'GET /requests': async () => ({ path: '/requests' }),
  'GET /requests/:id': async () => ({ path: `/requests/${fixture.request}` }),
  'GET /metrics/timeseries': async () => ({ path: '/metrics/timeseries' }),
}
/** POSTs that create answer 201; the provider test creates nothing. */
const expectedStatus = (route: string) => (route.startsWith('POST') && !route.endsWith('/test') ? 201 : 200)

/** Everything the admin API can show, read with the master key: a refused call must change none of it. */
const state = async () => Promise.all(['/providers', '/models', '/keys'].map(async (path) => (await asMaster('GET', path)).body))

beforeAll(async () => {
  gw = await startGateway()
  const provider = (await asMaster('POST', '/providers', providerBody())).body
  const model = (await asMaster('POST', '/models', { name: unique('model'), targets: [{ provider: provider.id, model: 'gpt-4o' }] })).body
  const key = (await asMaster('POST', '/keys', { name: unique('key') })).body
  virtualKey = (await asMaster('POST', '/keys', { name: 'isolation-client' })).body.key
  // One request record for GET /requests/:id (a refused request is recorded too).
  await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${virtualKey}`, 'content-type': 'application/json' }, body: '{"model":"none","messages":[]}' })
  await gw.gateway.records!.flush()
  const request = (await asMaster('GET', '/requests?limit=1')).body.data[0].id
  fixture = { provider: provider.id, model: model.id, key: key.id, request }
})

afterAll(async () => {
  await gw.close()
})

describe('SE9: only the master key opens the admin API', () => {
  test('the table covers every admin route the gateway serves', () => {
    const served = adminRoutes(gw.gateway).routes.map((r) => `${r.method} ${r.path.replace('/admin/v1', '')}`)
    expect(served.toSorted()).toEqual(Object.keys(ROUTES).toSorted())
  })

  test('every route × {no token, a virtual key, a wrong master key, the master key without Bearer}: 401, nothing changed; the master key: 2xx', async () => {
    let address = 10
    for (const [route, prepare] of Object.entries(ROUTES)) {
      const method = route.split(' ')[0]!
      const { path, body } = await prepare()
      const from = `127.0.0.${address++}`
      const before = await state()
      const refusals = [
        ['no token', null, 'missing_api_key'],
        ['a virtual key', `Bearer ${virtualKey}`, 'invalid_api_key'],
        ['a wrong master key', `Bearer ${MASTER_KEY.slice(0, -1)}x`, 'invalid_api_key'],
        ['the master key as a bare value', MASTER_KEY, 'missing_api_key'],
      ] as const
      for (const [who, authorization, code] of refusals) {
        const answer = await admin(from, method, path, authorization, body)
        expect({ route, who, status: answer.status, code: answer.body?.error?.code }).toEqual({ route, who, status: 401, code })
        validateSchema('ErrorResponse', answer.body)
      }
      expect(await state()).toEqual(before)
      const master = await admin(from, method, path, `Bearer ${MASTER_KEY}`, body)
      expect({ route, status: master.status }).toEqual({ route, status: expectedStatus(route) })
    }
  })

  test('a Host header that is not a host (x/y, a?, empty…) cannot open any route: 400 invalid_host; a short host still needs the key', async () => {
    const { port } = new URL(gw.origin)
    const prepared = await Promise.all(Object.entries(ROUTES).map(async ([route, prepare]) => [route, await prepare()] as const))
    const before = await state()
    for (const [route, { path, body }] of prepared) {
      const [method] = route.split(' ')
      const payload = body === undefined ? '' : JSON.stringify(body)
      const raw = (target: string, host: string) =>
        exchange(
          Number(port),
          `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(payload)}\r\nconnection: close\r\n\r\n${payload}`,
        )
      for (const host of ['x/y', 'a?', 'a#', 'user@a', 'a b', `localhost:${port}/`, '']) {
        const answer = await raw(`/admin/v1${path}`, host)
        expect({ route, host, status: answer.slice(9, 12), code: /"code":"(\w+)"/.exec(answer)?.[1] }).toEqual({ route, host, status: '400', code: 'invalid_host' })
      }
      // A host of one letter is valid; a request target in absolute form names its own host: both still need the key.
      for (const [target, host] of [[`/admin/v1${path}`, 'a'], [`http://a/admin/v1${path}`, 'x/y']]) {
        expect({ route, target, status: (await raw(target!, host!)).slice(9, 12) }).not.toEqual({ route, target, status: expect.stringMatching(/^2/) })
      }
    }
    expect(await state()).toEqual(before)
  })

  test('a short host (a gateway reached as http://api/) routes like any other: no route lost, none found under another path', async () => {
    const { port } = new URL(gw.origin)
    const { name } = (await asMaster('GET', `/models/${fixture.model}`)).body
    const raw = async (path: string, authorization: string) =>
      (await exchange(Number(port), `GET ${path} HTTP/1.1\r\nHost: api\r\nauthorization: ${authorization}\r\nconnection: close\r\n\r\n`)).slice(9, 12)
    expect(await raw(`/v1/models/${name}`, `Bearer ${virtualKey}`)).toBe('200')
    expect(await raw('/ui/keys', '')).toBe('200')
    expect(await raw(`/admin/v1/models/${fixture.model}`, `Bearer ${MASTER_KEY}`)).toBe('200')
    // Elysia took the path from the 11th character on: "http://api/v1/admin/v1/keys" was read as /admin/v1/keys.
    expect(await raw('/v1/admin/v1/keys', `Bearer ${MASTER_KEY}`)).toBe('404')
    expect(await raw('/xx/v1/models', `Bearer ${virtualKey}`)).toBe('404')
  })

  test('past the wrong-key throttle: every route refused from that address (401, then 429), the master key too; other addresses unaffected', async () => {
    const from = '127.0.0.200'
    const before = await state()
    const statuses: number[] = []
    for (const [route, prepare] of Object.entries(ROUTES)) {
      const { path, body } = await prepare()
      for (const authorization of [`Bearer ${virtualKey}`, `Bearer wrong-${MASTER_KEY}`]) {
        const answer = await admin(from, route.split(' ')[0]!, path, authorization, body)
        validateSchema('ErrorResponse', answer.body)
        statuses.push(answer.status)
      }
    }
    // The throttle's own test (admin-hardening) pins its numbers; here: ten 401s, then 429s, never a 2xx.
    expect(statuses.slice(0, 10).every((s) => s === 401)).toBe(true)
    expect(statuses.slice(10).every((s) => s === 429)).toBe(true)
    expect(statuses.length).toBe(2 * Object.keys(ROUTES).length)
    expect((await admin(from, 'GET', '/keys', `Bearer ${MASTER_KEY}`)).status).toBe(429)
    expect((await asMaster('GET', '/keys')).status).toBe(200)
    // Only what the master's own preparation calls created (objects for the DELETE routes) differs.
    const after = await state()
    const created = Object.keys(ROUTES).filter((r) => r.startsWith('DELETE')).length
    expect(after.flatMap((list) => list.data).length).toBe(before.flatMap((list) => list.data).length + created)
    for (const [i, list] of before.entries()) expect(after[i].data).toEqual(expect.arrayContaining(list.data))
  })
})
