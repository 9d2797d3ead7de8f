import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { exchange } from '../helpers/raw-http.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'

/**
 * The HTTP edge seen from a socket: paths that do not decode, bodies past every limit, the metrics token,
 * slow headers (PR11) and malformed HTTP/1 framing (PR12).
 */
let fake: FakeOpenAI
let gw: TestGateway
let key: string
const logs = { level: 'info', lines: [] as string[] }

const CHAT = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })

beforeAll(async () => {
  fake = await startFakeOpenAI()
  gw = await startGateway({}, logs)
  await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  await gw.admin('POST', '/models', { name: 'org/model ü', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  key = (await gw.admin('POST', '/keys', { name: 'edge' })).key
})

afterAll(async () => {
  await gw.close()
  await fake.stop()
})

async function expectEnvelope(res: Response, status: number, code: string) {
  const body = (await res.json()) as any
  expect({ status: res.status, code: body.error?.code }).toEqual({ status, code })
  validateSchema('ErrorResponse', body)
  return body
}

const portOf = (g: TestGateway) => Number(new URL(g.origin).port)

describe('a path that is not valid percent-encoding (bug 5)', () => {
  const undecodable = [
    ['GET', '/v1/models/%ZZ'],
    ['GET', '/v1/models/%E0%A4%A'],
    ['GET', '/v1/models/%FF'],
    ['POST', '/v1/chat/completions/%'],
    ['GET', '/admin/v1/keys/%ZZ'],
    ['PATCH', '/admin/v1/models/%C3'],
    ['DELETE', '/admin/v1/providers/abc%2'],
    ['GET', '/nowhere/%ZZ'],
  ] as const

  test('is a 400 invalid_url before auth, with or without a key, and logs no error', async () => {
    const errorsBefore = logs.lines.filter((l) => JSON.parse(l).level === 'error').length
    for (const [method, path] of undecodable) {
      for (const authorization of [null, `Bearer ${key}`, `Bearer ${MASTER_KEY}`]) {
        const res = await fetch(gw.origin + path, { method, headers: authorization ? { authorization } : {} })
        await expectEnvelope(res, 400, 'invalid_url')
      }
    }
    expect(logs.lines.filter((l) => JSON.parse(l).level === 'error').length).toBe(errorsBefore)
  })

  test('valid encodings still reach their route, decoded once', async () => {
    const auth = { authorization: `Bearer ${key}` }
    const model = await fetch(`${gw.baseURL}/models/${encodeURIComponent('org/model ü')}`, { headers: auth })
    expect(await model.json()).toMatchObject({ id: 'org/model ü' })
    expect((await fetch(`${gw.baseURL}/models/org/model%20%C3%BC`, { headers: auth })).status).toBe(200)
    // %25 is a literal '%': decoded once it names 'm%41', which does not exist (not 'mA').
    await expectEnvelope(await fetch(`${gw.baseURL}/models/m%2541`, { headers: auth }), 404, 'model_not_found')
    const admin = await fetch(`${gw.origin}/admin/v1/models/${encodeURIComponent('org/model ü')}`, { headers: { authorization: `Bearer ${MASTER_KEY}` } })
    expect(admin.status).toBe(200)
  })
})

describe('request bodies past the limit: always the JSON 413', () => {
  // The helper's limit is 1 MiB; Bun's own cap used to be 2 × limit + 1 MiB, past which Bun answered an empty 413.
  const FIVE_MIB = 5 * 1024 * 1024
  const chat = (body: RequestInit['body'], headers: Record<string, string> = {}) =>
    fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body })
  const streamOf = (bytes: Uint8Array) =>
    new ReadableStream({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 65536) controller.enqueue(bytes.subarray(i, i + 65536))
        controller.close()
      },
    })

  test('with Content-Length and chunked, far past the old cap', async () => {
    const big = new Uint8Array(FIVE_MIB).fill(0x61)
    await expectEnvelope(await chat(big), 413, 'request_too_large')
    await expectEnvelope(await chat(streamOf(big)), 413, 'request_too_large')
    // Without a key the body is never read: 401 at once.
    await expectEnvelope(await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', body: big }), 401, 'missing_api_key')
  })

  test('admin bodies too (Elysia parses them): 413 past the limit, after the master key was checked', async () => {
    const admin = (body: RequestInit['body'], token = MASTER_KEY) =>
      fetch(`${gw.origin}/admin/v1/keys`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body })
    const big = new TextEncoder().encode(JSON.stringify({ name: 'big', metadata: { pad: 'x'.repeat(2 * 1024 * 1024) } }))
    await expectEnvelope(await admin(big), 413, 'request_too_large')
    await expectEnvelope(await admin(streamOf(big)), 413, 'request_too_large')
    await expectEnvelope(await admin(big, 'not-the-master-key'), 401, 'invalid_api_key')
    const small = await admin(JSON.stringify({ name: 'small-enough', metadata: { pad: 'x'.repeat(1000) } }))
    expect(small.status).toBe(201)
  })

  test('a 50 MB upload is refused as it arrives: memory stays under twice the limit', async () => {
    const LIMIT = 8 * 1024 * 1024
    const big = await startGateway({ maxBodyBytes: LIMIT })
    try {
      const bigKey = (await big.admin('POST', '/keys', { name: 'uploader' })).key
      const block = new Uint8Array(65536).fill(0x61)
      const TOTAL = 763 * block.length // 50 MB
      // Produced as the connection takes it: the client itself holds one 64 KB block.
      const fiftyMB = () => {
        let sent = 0
        return new ReadableStream({ pull: (c) => (sent >= TOTAL ? c.close() : void ((sent += block.length), c.enqueue(block))) })
      }
      let peak = 0
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 2)
      const growth: Record<string, number> = {}
      for (const [path, bearer] of [['/v1/chat/completions', bigKey], ['/admin/v1/keys', MASTER_KEY]] as const) {
        for (const framing of ['chunked', 'content-length'] as const) {
          Bun.gc(true)
          const base = process.memoryUsage().rss
          peak = base
          const res = await fetch(big.origin + path, {
            method: 'POST',
            headers: { authorization: `Bearer ${bearer}`, 'content-type': 'application/json', ...(framing === 'content-length' ? { 'content-length': String(TOTAL) } : {}) },
            body: fiftyMB(),
          })
          await expectEnvelope(res, 413, 'request_too_large')
          growth[`${path} ${framing}`] = Math.round((peak - base) / 1e5) / 10
        }
      }
      clearInterval(sampler)
      console.log(`50 MB upload, limit 8 MiB: RSS peak growth (MB) ${JSON.stringify(growth)}`)
      // Buffering the upload would cost ≥ 50 MB (request.text() of it: ~117 MB).
      for (const mb of Object.values(growth)) expect(mb * 1e6).toBeLessThan(2 * LIMIT)
    } finally {
      await big.close()
    }
  }, 60_000)
})

describe('/metrics with CONDUIT_METRICS_TOKEN', () => {
  test('set: Bearer <token> required, 401 in our envelope otherwise', async () => {
    const guarded = await startGateway({ metricsToken: 'metrics-token-0123456789' })
    try {
      const metrics = (authorization?: string) => fetch(`${guarded.origin}/metrics`, { headers: authorization ? { authorization } : {} })
      await expectEnvelope(await metrics(), 401, 'missing_api_key')
      await expectEnvelope(await metrics('Bearer wrong-token'), 401, 'invalid_api_key')
      await expectEnvelope(await metrics('Bearer metrics-token-012345678'), 401, 'invalid_api_key')
      await expectEnvelope(await metrics(`Bearer ${MASTER_KEY}`), 401, 'invalid_api_key')
      for (const good of ['Bearer metrics-token-0123456789', 'bearer  metrics-token-0123456789']) {
        const res = await metrics(good)
        expect(res.status).toBe(200)
        expect(await res.text()).toContain('# TYPE')
      }
    } finally {
      await guarded.close()
    }
  })

  test('unset: open, as before (scrapers usually sit on a private network)', async () => {
    const res = await fetch(`${gw.origin}/metrics`)
    expect(res.status).toBe(200)
  })
})

/**
 * The trickling clients, in a process of their own so that their timers do not share the gateway's event loop
 * (in-process they tripled the p99 being measured). Prints, when every connection has closed or at `deadlineMs`,
 * how long each one lived, as JSON.
 */
const TRICKLER = `
  const net = require('node:net')
  const [port, count, deadlineMs] = process.argv.slice(-3).map(Number)
  const line = 'POST /v1/chat/completions HTTP/1.1\\r\\nhost: x\\r\\nx-slow: ' + 'a'.repeat(200)
  const lived = []
  const report = () => { console.log(JSON.stringify(lived)); process.exit(0) }
  setTimeout(report, deadlineMs)
  for (let i = 0; i < count; i++) {
    const opened = performance.now()
    const socket = net.connect(port, '127.0.0.1')
    let sent = 0
    socket.write(line[sent++])
    const trickle = setInterval(() => socket.write(line[sent++ % line.length]), 3000)
    socket.on('error', () => {})
    socket.on('close', () => { clearInterval(trickle); lived.push(performance.now() - opened); if (lived.length === count) report() })
  }
`

describe('PR11: slowloris', () => {
  test('200 connections trickling one header byte every 3 s are all closed; normal requests all succeed meanwhile', async () => {
    const SLOW = 200
    const idleTimeoutSec = 30 // the shipped default; Bun closes unfinished headers after its own ~10 s whatever it is
    const chat = async () => {
      const started = performance.now()
      const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: CHAT })
      await res.arrayBuffer()
      return { ok: res.status === 200, ms: performance.now() - started }
    }
    const p99 = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length * 0.99)]!
    for (let i = 0; i < 20; i++) await chat() // warm-up
    const baseline: number[] = []
    for (let i = 0; i < 300; i++) baseline.push((await chat()).ms)

    const trickler = Bun.spawn([process.execPath, '-e', TRICKLER, String(portOf(gw)), String(SLOW), String((idleTimeoutSec + 5) * 1000)], { stdout: 'pipe' })
    let finished = false
    void trickler.exited.then(() => (finished = true))
    const during: { ok: boolean; ms: number }[] = []
    while (!finished) {
      during.push(await chat())
      await Bun.sleep(5)
    }
    const lived: number[] = JSON.parse(await new Response(trickler.stdout).text())

    const longest = Math.max(...lived)
    console.log(
      `PR11: ${lived.length}/${SLOW} trickling connections closed by the server, the last after ${(longest / 1000).toFixed(1)} s; ` +
        `${during.filter((r) => r.ok).length}/${during.length} normal requests OK, p99 ${p99(during.map((r) => r.ms)).toFixed(1)} ms ` +
        `(baseline p99 ${p99(baseline).toFixed(1)} ms)`,
    )
    expect(lived.length).toBe(SLOW)
    expect(longest).toBeLessThanOrEqual((idleTimeoutSec + 3) * 1000)
    expect(during.length).toBeGreaterThan(0)
    expect(during.every((r) => r.ok)).toBe(true)
  }, 60_000)
})

describe('PR12: HTTP/1 strictness', () => {
  test('malformed framing gets the status Bun 1.4.5 gives, and nothing reaches the upstream', async () => {
    const request = (lines: string[], body = CHAT) => lines.join('\r\n') + '\r\n\r\n' + body
    const auth = () => `authorization: Bearer ${key}`
    const start = 'POST /v1/chat/completions HTTP/1.1'
    const length = `content-length: ${CHAT.length}`
    const close = 'connection: close'
    const corpus: [string, string, number][] = [
      ['CL + TE', request([start, 'host: x', auth(), length, 'transfer-encoding: chunked', close], `${CHAT.length.toString(16)}\r\n${CHAT}\r\n0\r\n\r\n`), 400],
      ['duplicate CL', request([start, 'host: x', auth(), length, `content-length: ${CHAT.length + 1}`, close]), 400],
      ['space before the colon', request([start, 'host: x', auth(), `content-length : ${CHAT.length}`, close]), 400],
      ['obs-fold', request([start, 'host: x', auth(), 'x-folded: a', ' b', length, close]), 400],
      ['bare LF', [start, 'host: x', auth(), length, close].join('\n') + '\n\n' + CHAT, 505],
      ['NUL in a header', request([start, 'host: x', auth(), 'x-nul: a\0b', length, close]), 400],
      ['bare CR in a header', request([start, 'host: x', auth(), 'x-cr: a\rb', length, close]), 400],
      ['invalid method G(T', request(['G(T /v1/chat/completions HTTP/1.1', 'host: x', auth(), length, close]), 400],
      ['HTTP/1.1 without Host', request([start, auth(), length, close]), 400],
      ['transfer-encoding: gzip', request([start, 'host: x', auth(), 'transfer-encoding: gzip', close]), 400],
      ['100 KB header', request([start, 'host: x', auth(), 'x-big: ' + 'a'.repeat(100 * 1024), length, close]), 431],
      ['70 KB URL', request([`POST /v1/chat/completions?q=${'a'.repeat(70 * 1024)} HTTP/1.1`, 'host: x', auth(), length, close]), 431],
      ['300 headers', request([start, 'host: x', auth(), ...Array.from({ length: 300 }, (_, i) => `x-h${i}: v`), length, close]), 431],
    ]
    // The control: the same request well-formed does reach the upstream.
    const control = await exchange(portOf(gw), request([start, 'host: x', auth(), 'content-type: application/json', length, close]))
    expect(control).toStartWith('HTTP/1.1 200')
    const upstreamBefore = fake.requests.length
    const statuses: Record<string, number> = {}
    for (const [name, payload] of corpus) {
      statuses[name] = Number((await exchange(portOf(gw), payload)).split(' ')[1])
    }
    // A Bun upgrade that changes any of these fails here on purpose: read its changelog, then update the table.
    expect(statuses).toEqual(Object.fromEntries(corpus.map(([name, , status]) => [name, status])))
    expect(fake.requests.length - upstreamBefore).toBe(0)
    expect((await fetch(`${gw.origin}/health`)).status).toBe(200)
  })
})
