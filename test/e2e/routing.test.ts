import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { startBlackhole, type Blackhole } from '../helpers/blackhole.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSseBody } from '../helpers/openapi.ts'

/**
 * Resilient routing against real network faults: a TCP fault proxy sits between the gateway and the fake
 * upstream (latency, stall, reset, refuse), as reliability checklist rows PR1–PR9 describe.
 */
let fake: FakeOpenAI
let gw: TestGateway
let key: string
const proxies: FaultProxy[] = []

/** A provider reached through its own fault proxy, with a model `name` on it. */
async function viaProxy(name: string, options: Record<string, unknown> = {}) {
  const proxy = await startFaultProxy({ hostname: '127.0.0.1', port: fake.port })
  proxies.push(proxy)
  await gw.admin('POST', '/providers', { name, type: 'openai', base_url: proxy.url('/v1'), api_key: 'sk-upstream-test', options })
  await gw.admin('POST', '/models', { name, targets: [{ provider: name, model: 'gpt-4o' }] })
  return proxy
}

const chat = (model: string, content: string, extra: Record<string, unknown> = {}, signal?: AbortSignal, g = gw) =>
  fetch(`${g.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }], ...extra }),
    signal,
  })

/** Reads a whole SSE body, noting when each piece arrived. */
async function readTimed(res: Response) {
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  const pieces: { at: number; text: string }[] = []
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    pieces.push({ at: performance.now(), text: decoder.decode(value, { stream: true }) })
  }
  return { text: pieces.map((p) => p.text).join(''), pieces }
}

beforeAll(async () => {
  fake = await startFakeOpenAI()
  gw = await startGateway({ timeouts: { connectMs: 5_000, firstByteMs: 60_000, idleMs: 60_000 } })
  key = (await gw.admin('POST', '/keys', { name: 'routing' })).key
  await gw.admin('POST', '/providers', { name: 'direct', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'direct', targets: [{ provider: 'direct', model: 'gpt-4o' }] })
})
afterAll(async () => {
  await gw.close()
  for (const p of proxies) p.stop()
  await fake.stop()
})

describe('timeouts (PR1–PR3)', () => {
  test('a first byte after 30 s is still delivered, JSON and streamed', async () => {
    const proxy = await viaProxy('patient')
    proxy.fault = { kind: 'latency', ms: 30_000 }
    const started = performance.now()
    const [json, stream] = await Promise.all([chat('patient', 'hi'), chat('patient', 'hi', { stream: true })])
    expect(json.status).toBe(200)
    expect(((await json.json()) as any).choices[0].message.content.length).toBeGreaterThan(0)
    expect(stream.status).toBe(200)
    validateSseBody(await stream.text(), 'CreateChatCompletionStreamResponse')
    expect(performance.now() - started).toBeGreaterThanOrEqual(30_000)
  }, 45_000)

  test('first-byte timeout: 504 within the timeout + 0.5 s, one attempt, the upstream connection closed', async () => {
    const proxy = await viaProxy('hasty', { timeouts: { first_byte_ms: 1000 } })
    proxy.fault = { kind: 'latency', ms: 10_000 }
    const before = fake.requests.length
    const started = performance.now()
    const res = await chat('hasty', 'hi')
    const elapsed = performance.now() - started
    expect(res.status).toBe(504)
    expect(((await res.json()) as any).error.code).toBe('upstream_timeout')
    expect(elapsed).toBeGreaterThanOrEqual(1000)
    expect(elapsed).toBeLessThan(1500)
    // A timed-out target is not retried by the same request.
    expect(fake.requests.length - before).toBe(1)
    await Bun.sleep(200)
    expect(proxy.open).toBe(0)
  })

  test('a stream that stalls mid-way ends with an error event within the idle timeout + 0.5 s', async () => {
    const proxy = await viaProxy('stalling', { timeouts: { idle_ms: 1000 } })
    // Headers and the first few chunks pass, then nothing.
    proxy.fault = { kind: 'stall', afterBytes: 700 }
    const res = await chat('stalling', 'slow-stream:20', { stream: true })
    expect(res.status).toBe(200)
    const { text, pieces } = await readTimed(res)
    const errorAt = pieces.findIndex((p) => p.text.includes('"error"'))
    expect(errorAt).toBeGreaterThan(0)
    const silence = pieces[errorAt]!.at - pieces[errorAt - 1]!.at
    expect(silence).toBeGreaterThanOrEqual(900)
    expect(silence).toBeLessThan(1500)
    expect(text).toContain('"code":"upstream_timeout"')
    expect(text).not.toContain('[DONE]')
  })

  test('PR3: 3 chunks then silence: the client gets the 3, an error event by idle + 0.5 s, and a partial ledger row', async () => {
    // The row's 2 s idle, halved to keep the suite short; the fake itself stalls (role chunk + 2 content chunks).
    const options = { timeouts: { idle_ms: 1000 } }
    await gw.admin('POST', '/providers', { name: 'silent', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test', options })
    await gw.admin('POST', '/models', { name: 'silent', targets: [{ provider: 'silent', model: 'gpt-4o' }] })
    const res = await chat('silent', 'stream-stall please', { stream: true })
    expect(res.status).toBe(200)
    const { text, pieces } = await readTimed(res)
    const closedAt = pieces.at(-1)!.at
    const events = text.split('\n\n').filter(Boolean)
    expect(events.length).toBe(4)
    expect(events.slice(0, 3).every((e) => JSON.parse(e.slice('data: '.length)).object === 'chat.completion.chunk')).toBe(true)
    expect(JSON.parse(events[3]!.slice('data: '.length)).error.code).toBe('upstream_timeout')
    const lastChunkAt = pieces.findLast((p) => p.text.includes('chat.completion.chunk'))!.at
    expect(closedAt - lastChunkAt).toBeGreaterThanOrEqual(900)
    expect(closedAt - lastChunkAt).toBeLessThan(1500)

    await gw.gateway.ledger.flush()
    const [row] = await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE request_id = ${res.headers.get('x-request-id')}`
    // Partial: the provider never sent its usage, so the row is our estimate of what the client did get. Not
    // `aborted` (that marks a client that went away): the gateway ended it, and the status says why.
    expect(row).toMatchObject({ status: 504, estimated: 1, aborted: 0, provider: 'silent' })
    expect(row.prompt_tokens).toBeGreaterThan(0)
    expect(row.completion_tokens).toBeGreaterThanOrEqual(2)
    expect(row.completion_tokens).toBeLessThanOrEqual(3)
    expect(row.cost_micros).toBeGreaterThan(0)
  })
})

describe('connect timeout (PR1)', () => {
  let hole: Blackhole
  beforeAll(async () => {
    hole = await startBlackhole()
    await gw.admin('POST', '/providers', {
      name: 'unreachable',
      type: 'openai',
      base_url: hole.url('/v1'),
      api_key: 'sk-upstream-test',
      options: { timeouts: { connect_ms: 500 } },
    })
  })
  afterAll(() => hole.close())

  test('a connect that hangs fails with 502 upstream_connect_timeout within twice connect_ms, not the first-byte timeout', async () => {
    await gw.admin('POST', '/models', { name: 'unreachable', targets: [{ provider: 'unreachable', model: 'gpt-4o' }] })
    const started = performance.now()
    const res = await chat('unreachable', 'hi')
    const elapsed = performance.now() - started
    expect(res.status).toBe(502)
    expect(((await res.json()) as any).error).toMatchObject({ code: 'upstream_connect_timeout', type: 'server_error' })
    expect(elapsed).toBeGreaterThanOrEqual(500)
    // Like a first-byte timeout, a connect timeout is not retried on the same target.
    expect(res.headers.get('x-conduit-attempts')).toBe('1')
    expect(res.headers.get('x-conduit-provider')).toBe('unreachable')
    expect(elapsed).toBeLessThan(2 * 500 + 300)
  })

  test('streamed calls to it hold at most 256 half-open connections, not one per call for the kernel’s two minutes', async () => {
    // A provider of its own: 300 connect timeouts eject it, which the tests after this one must not see.
    await gw.admin('POST', '/providers', { name: 'unreachable-streams', type: 'openai', base_url: hole.url('/v1'), api_key: 'sk-upstream-test', options: { timeouts: { connect_ms: 500 } } })
    await gw.admin('POST', '/models', { name: 'unreachable-streams', targets: [{ provider: 'unreachable-streams', model: 'gpt-4o' }] })
    // SYN-SENT (02) sockets to the blackhole's port, from /proc/net/tcp (remote address and port in hex).
    const halfOpen = async () => {
      const port = hole.port.toString(16).toUpperCase().padStart(4, '0')
      return (await Bun.file('/proc/net/tcp').text()).split('\n').filter((line) => line.trim().split(/\s+/)[2]?.endsWith(`:${port}`) && line.trim().split(/\s+/)[3] === '02').length
    }
    const before = await halfOpen()
    const statuses = await Promise.all(Array.from({ length: 300 }, async () => (await chat('unreachable-streams', 'hi', { stream: true })).status))
    expect(statuses.every((s) => s === 502)).toBe(true)
    // 256 at most, and the few connects of the reachability probe that decides a connect timeout (before: 302).
    expect((await halfOpen()) - before).toBeLessThanOrEqual(256 + 8)
  }, 20_000)

  test('the request falls back to the next target at once', async () => {
    await gw.admin('POST', '/models', {
      name: 'unreachable-first',
      targets: [
        { provider: 'unreachable', model: 'gpt-4o', priority: 1 },
        { provider: 'direct', model: 'gpt-4o', priority: 0 },
      ],
    })
    const started = performance.now()
    const res = await chat('unreachable-first', 'hi')
    expect(res.status).toBe(200)
    expect(res.headers.get('x-conduit-provider')).toBe('direct')
    expect(res.headers.get('x-conduit-attempts')).toBe('2')
    expect(performance.now() - started).toBeLessThan(2 * 500 + 300)
  })

  test('a reachable upstream that is slow to answer is left to the first-byte timeout', async () => {
    const proxy = await viaProxy('slow-but-there', { timeouts: { connect_ms: 100 } })
    proxy.fault = { kind: 'latency', ms: 800 }
    const res = await chat('slow-but-there', 'hi')
    expect(res.status).toBe(200)
  })
})

describe('retries and fallbacks (PR5, PR6, PR8)', () => {
  test('503 then 200: served after 2 attempts', async () => {
    const before = fake.requests.length
    const res = await chat('direct', `fail-once-503:${crypto.randomUUID()}`)
    expect(res.status).toBe(200)
    expect(res.headers.get('x-conduit-attempts')).toBe('2')
    expect(fake.requests.length - before).toBe(2)
  })

  test('a 200 whose JSON is cut short is a 502 upstream_bad_response (retryable), never relayed', async () => {
    for (const fault of ['truncated-body', 'truncated-tail']) {
      const before = fake.requests.length
      const res = await chat('direct', fault)
      const body = (await res.json()) as any
      expect([fault, res.status, body.error?.code]).toEqual([fault, 502, 'upstream_bad_response'])
      expect(fake.requests.length - before).toBe(Number(res.headers.get('x-conduit-attempts')))
    }
  })

  test('a 400 is never retried', async () => {
    const before = fake.requests.length
    const res = await chat('direct', 'fail-400')
    expect(res.status).toBe(400)
    expect(res.headers.get('x-conduit-attempts')).toBe('1')
    expect(fake.requests.length - before).toBe(1)
  })

  test('a provider that refuses our one key is not asked again with it; the next target is, and a second key is', async () => {
    await gw.admin('POST', '/providers', { name: 'wrong-key', type: 'openai', base_url: fake.url, api_key: 'sk-not-this-one' })
    await gw.admin('POST', '/models', { name: 'wrong-key', targets: [{ provider: 'wrong-key', model: 'gpt-4o' }] })
    await gw.admin('POST', '/models', { name: 'wrong-then-right', targets: [{ provider: 'wrong-key', model: 'gpt-4o', priority: 2 }, { provider: 'direct', model: 'gpt-4o', priority: 1 }] })
    await gw.admin('POST', '/providers', { name: 'second-key', type: 'openai', base_url: fake.url, api_key: ['sk-not-this-one', 'sk-upstream-test'] })
    await gw.admin('POST', '/models', { name: 'second-key', targets: [{ provider: 'second-key', model: 'gpt-4o' }] })
    const sent = async (model: string, status: number) => {
      const before = fake.requests.length
      const res = await chat(model, 'hi')
      const body = (await res.json()) as any
      expect([model, res.status, body.error?.code]).toEqual([model, status, status === 502 ? 'upstream_auth_failed' : undefined])
      return [Number(res.headers.get('x-conduit-attempts')), fake.requests.slice(before).map((r) => r.headers.authorization)]
    }
    expect(await sent('wrong-key', 502)).toEqual([1, ['Bearer sk-not-this-one']])
    expect(await sent('wrong-then-right', 200)).toEqual([2, ['Bearer sk-not-this-one', 'Bearer sk-upstream-test']])
    // Keys are taken in turn: whichever this request starts with, the other one answers.
    const [attempts, keys] = await sent('second-key', 200)
    expect((keys as string[]).at(-1)).toBe('Bearer sk-upstream-test')
    expect(attempts).toBeLessThanOrEqual(2)
    // The refused key sits out while the other serves: every request answered, none by the refused key, whatever the
    // retry budget (a refused key moving on to the next cost a retry, and 40% of requests failed once it was spent).
    const after = await Promise.all(Array.from({ length: 40 }, () => sent('second-key', 200)))
    expect(after.flatMap(([, used]) => used as string[]).filter((k) => k !== 'Bearer sk-upstream-test')).toEqual([])
  })

  test('a connection reset after the first event is not retried: the client gets an error event', async () => {
    const proxy = await viaProxy('resetting')
    // The response head and the role chunk's event are about 500 bytes: the reset cuts the stream after them.
    proxy.fault = { kind: 'reset', afterBytes: 900 }
    const before = fake.requests.length
    const res = await chat('resetting', 'slow-stream:20', { stream: true })
    expect(res.status).toBe(200)
    const text = await res.text()
    // Said as what happened: the provider was reached, its answer broke off.
    expect(text).toContain('"code":"upstream_stream_broken"')
    expect(text).not.toContain('[DONE]')
    expect(fake.requests.length - before).toBe(1)
  })

  test('a connection reset within the first event goes to the next target: nothing was relayed yet', async () => {
    const proxy = await startFaultProxy({ hostname: '127.0.0.1', port: fake.port })
    proxies.push(proxy)
    await gw.admin('POST', '/providers', { name: 'cut-early', type: 'openai', base_url: proxy.url('/v1'), api_key: 'sk-upstream-test' })
    await gw.admin('POST', '/models', { name: 'cut-early', targets: [{ provider: 'cut-early', model: 'gpt-4o', priority: 2 }, { provider: 'direct', model: 'gpt-4o', priority: 1 }] })
    proxy.fault = { kind: 'reset', afterBytes: 300 } // the head, and part of the first event
    const res = await chat('cut-early', 'Hello', { stream: true })
    expect(res.status).toBe(200)
    expect(res.headers.get('x-conduit-attempts')).toBe('2')
    const text = await res.text()
    expect(text).toContain('data: [DONE]')
    expect(text).not.toContain('"error"')
  })

  test('an upstream that always answers 503: extra attempts stay within 20% of requests', async () => {
    const fresh = await startGateway()
    try {
      await fresh.admin('POST', '/providers', { name: 'p', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
      await fresh.admin('POST', '/models', { name: 'm', targets: [{ provider: 'p', model: 'gpt-4o' }] })
      const own = (await fresh.admin('POST', '/keys', { name: 'k' })).key
      const before = fake.requests.length
      let next = 0
      const statuses: number[] = []
      await Promise.all(
        Array.from({ length: 50 }, async () => {
          while (next < 1000) {
            next++
            const res = await fetch(`${fresh.baseURL}/chat/completions`, {
              method: 'POST',
              headers: { authorization: `Bearer ${own}`, 'content-type': 'application/json' },
              body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'fail-503' }] }),
            })
            statuses.push(res.status)
            await res.text()
          }
        }),
      )
      const attempts = fake.requests.length - before
      expect(statuses.every((s) => s === 503)).toBe(true)
      expect(attempts).toBeGreaterThan(1000) // retries did happen
      expect(attempts).toBeLessThanOrEqual(1200)
    } finally {
      await fresh.close()
    }
  }, 60_000)

  test('one dead target of two: after it is ejected, ≥ 95 of the next 100 requests go to the healthy one first', async () => {
    const dead = await startFaultProxy({ hostname: '127.0.0.1', port: fake.port })
    proxies.push(dead)
    dead.refuse()
    await gw.admin('POST', '/providers', { name: 'dead', type: 'openai', base_url: dead.url('/v1'), api_key: 'sk-upstream-test' })
    await gw.admin('POST', '/models', {
      name: 'pair',
      targets: [
        { provider: 'direct', model: 'gpt-4o' },
        { provider: 'dead', model: 'gpt-4o' },
      ],
    })
    // Warm-up: every request is still served (falling back), and the dead target fails its way out.
    for (let i = 0; i < 20; i++) expect((await chat('pair', 'hi')).status).toBe(200)
    let firstTry = 0
    for (let i = 0; i < 100; i++) {
      const res = await chat('pair', 'hi')
      expect(res.status).toBe(200)
      if (res.headers.get('x-conduit-provider') === 'direct' && res.headers.get('x-conduit-attempts') === '1') firstTry++
      await res.text()
    }
    expect(firstTry).toBeGreaterThanOrEqual(95)
    // Every request was answered, yet /metrics tells the operator the dead one failed, and was ejected.
    const metrics = await (await fetch(`${gw.origin}/metrics`)).text()
    const failures = Number(/^conduit_upstream_attempt_failures_total\{provider="dead",code="(\w+)"\} (\d+)$/m.exec(metrics)?.[2])
    expect(failures).toBeGreaterThanOrEqual(5)
    expect(metrics).toMatch(/^conduit_upstream_ejections_total\{provider="dead",model="gpt-4o"\} [1-9]\d*$/m)
  })
})

describe('clients and keys (PR9)', () => {
  test('a client that aborts a stream: the upstream connection is closed within 1 s', async () => {
    const proxy = await viaProxy('abortable')
    const controller = new AbortController()
    const abortedBefore = fake.aborted
    const res = await chat('abortable', 'slow-stream:100', { stream: true }, controller.signal)
    const reader = res.body!.getReader()
    await reader.read()
    await reader.read()
    expect(proxy.open).toBe(1)
    controller.abort()
    const started = performance.now()
    while (proxy.open > 0 && performance.now() - started < 1000) await Bun.sleep(10)
    expect(proxy.open).toBe(0)
    expect(performance.now() - started).toBeLessThan(1000)
    while (fake.aborted === abortedBefore && performance.now() - started < 1000) await Bun.sleep(10)
    expect(fake.aborted).toBe(abortedBefore + 1)
  })

  test('PR9: a client that aborts after 3 chunks: the upstream stops within 1 s, ≤ 2 chunks later, and its slot is free', async () => {
    const single = (await gw.admin('POST', '/keys', { name: 'pr9-single', max_parallel: 1 })).key
    const stream = (signal?: AbortSignal) =>
      fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${single}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'direct', stream: true, messages: [{ role: 'user', content: 'slow-stream:100 pr9' }] }),
        signal,
      })
    const controller = new AbortController()
    const res = await stream(controller.signal)
    expect(res.status).toBe(200)
    const record = fake.streams.findLast((s) => s.trigger === 'slow-stream:100 pr9')!
    const reader = res.body!.getReader()
    const decoder = new TextDecoder()
    let received = ''
    while (received.split('\n\n').length - 1 < 3) received += decoder.decode((await reader.read()).value, { stream: true })
    // The slot is taken while the stream runs, so the admission below is a release, not a limit never applied.
    expect((await stream()).status).toBe(429)

    controller.abort()
    const abortedAt = performance.now()
    while (record.cancelledAt === null && performance.now() - abortedAt < 2000) await Bun.sleep(5)
    expect(record.cancelledAt).not.toBeNull()
    expect(record.cancelledAt! - abortedAt).toBeLessThan(1000)

    let next = await stream()
    while (next.status === 429 && performance.now() - abortedAt < 1000) {
      await next.text()
      await Bun.sleep(20)
      next = await stream()
    }
    expect(next.status).toBe(200)
    expect(await next.text()).toContain('data: [DONE]')
    // Chunks come every 100 ms and 2 s have passed: a cancel that lagged would show as chunks produced for nobody.
    expect(record.chunkTimes.filter((t) => t > abortedAt).length).toBeLessThanOrEqual(2)
  })

  test('several keys of one provider are used in turn; a key told to wait (429 Retry-After) rests', async () => {
    const keys = ['sk-key-one', 'sk-key-two']
    const multi = await startFakeOpenAI({ apiKey: keys })
    try {
      await gw.admin('POST', '/providers', { name: 'multi', type: 'openai', base_url: multi.url, api_key: keys })
      const view = await gw.admin('GET', '/providers/multi')
      expect(view.api_key_last4).toBe('-one,-two')
      expect(JSON.stringify(view)).not.toContain('sk-key')
      await gw.admin('POST', '/models', { name: 'multi', targets: [{ provider: 'multi', model: 'gpt-4o' }] })
      const used = async (n: number) => {
        const from = multi.requests.length
        for (let i = 0; i < n; i++) expect((await chat('multi', 'hi')).status).toBe(200)
        return multi.requests.slice(from).map((r) => r.headers.authorization!.slice('Bearer '.length))
      }
      const turns = await used(4)
      expect(turns.filter((k) => k === keys[0]).length).toBe(2)
      expect(turns.filter((k) => k === keys[1]).length).toBe(2)

      multi.rateLimitKey(keys[0]!, 30)
      // At most one request meets the limited key (and is retried on the other); then it rests.
      const after = await used(6)
      expect(after.filter((k) => k === keys[0]).length).toBeLessThanOrEqual(1)
      expect(after.filter((k) => k === keys[1]).length).toBeGreaterThanOrEqual(6)
    } finally {
      await multi.stop()
    }
  })

  test('the SDK sees x-conduit-provider, -model and -attempts on every routed response', async () => {
    const client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
    const { response } = await client.chat.completions.create({ model: 'direct', messages: [{ role: 'user', content: 'hi' }] }).withResponse()
    expect(response.headers.get('x-conduit-provider')).toBe('direct')
    expect(response.headers.get('x-conduit-model')).toBe('gpt-4o')
    expect(response.headers.get('x-conduit-attempts')).toBe('1')
  })
})

describe('strategies through the gateway', () => {
  test('lowest-latency: after one sample each, traffic goes to the deployment with the faster first byte', async () => {
    const slow = await startFaultProxy({ hostname: '127.0.0.1', port: fake.port }, { kind: 'latency', ms: 150 })
    proxies.push(slow)
    await gw.admin('POST', '/providers', { name: 'far', type: 'openai', base_url: slow.url('/v1'), api_key: 'sk-upstream-test' })
    const created = await gw.admin('POST', '/models', {
      name: 'fastest',
      targets: [
        { provider: 'far', model: 'gpt-4o' },
        { provider: 'direct', model: 'gpt-4o' },
      ],
      routing: { strategy: 'lowest-latency', retries: 1 },
    })
    expect(created.routing).toEqual({ strategy: 'lowest-latency', retries: 1 })
    const served: string[] = []
    for (let i = 0; i < 22; i++) {
      const res = await chat('fastest', 'hi')
      served.push(res.headers.get('x-conduit-provider')!)
      await res.text()
    }
    expect(served.slice(0, 2).sort()).toEqual(['direct', 'far'])
    expect(served.slice(2).every((p) => p === 'direct')).toBe(true)
    expect((await gw.adminRaw('PATCH', '/models/fastest', { routing: { strategy: 'fastest-first' } })).status).toBe(400)
  })

  test('least-busy: concurrent streams spread evenly over two deployments', async () => {
    await gw.admin('POST', '/providers', { name: 'twin', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
    await gw.admin('POST', '/models', {
      name: 'balanced',
      targets: [
        { provider: 'direct', model: 'gpt-4o' },
        { provider: 'twin', model: 'gpt-4o' },
      ],
      routing: { strategy: 'least-busy' },
    })
    const streams: Response[] = []
    for (let i = 0; i < 10; i++) {
      streams.push(await chat('balanced', 'slow-stream:20', { stream: true }))
    }
    const count = (p: string) => streams.filter((r) => r.headers.get('x-conduit-provider') === p).length
    expect(count('direct')).toBe(5)
    expect(count('twin')).toBe(5)
    await Promise.all(streams.map((r) => r.text()))
  })
})
