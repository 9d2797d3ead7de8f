import { describe, expect, test } from 'bun:test'
import { GatewayError } from '../../src/plugin-sdk/errors.ts'
import type { ProviderConfig, VirtualModel } from '../../src/plugin-sdk/types.ts'
import { BACKOFF_CAP_MS, EJECTION_MS, EJECT_AFTER, Router, backoffMs, retryAfterMs } from '../../src/core/router.ts'

/** The router's decisions with a hand-driven clock. */
const provider = (id: string, keys: string[] = ['k']): ProviderConfig => ({ id, name: id, type: 'openai', baseURL: null, apiKey: keys[0]!, apiKeys: keys, options: {} })
const providers = new Map(['a', 'b', 'c'].map((id) => [id, provider(id)]))
const model = (targets: { provider: string; weight?: number; priority?: number }[], strategy?: any): VirtualModel => ({
  id: 'm',
  name: 'm',
  limits: null,
  routing: strategy ? { strategy } : null,
  createdAt: 0,
  targets: targets.map((t) => ({ provider: t.provider, model: 'x', weight: t.weight ?? 1, priority: t.priority ?? 0 })),
})
const clock = () => {
  let now = 0
  return { now: () => now, advance: (ms: number) => (now += ms) }
}
const fail = (status: number, headers: Record<string, string> = {}) => new GatewayError(status, 'failed', { headers })
const ids = (r: Router, m: VirtualModel) => r.plan(m, (id) => providers.get(id)).map((t) => t.provider.id)

describe('router', () => {
  test('priorities are tiers; weights split traffic inside a tier', () => {
    const r = new Router()
    const m = model([{ provider: 'a', weight: 3 }, { provider: 'b', weight: 1 }, { provider: 'c', priority: -1 }])
    let aFirst = 0
    for (let i = 0; i < 4000; i++) {
      const plan = ids(r, m)
      expect(plan.at(-1)).toBe('c')
      if (plan[0] === 'a') aFirst++
    }
    expect(aFirst / 4000).toBeGreaterThan(0.7)
    expect(aFirst / 4000).toBeLessThan(0.8)
  })

  test('5 consecutive 5xx eject a target for 30 s, doubling on repeat; a success resets the count', () => {
    const c = clock()
    const r = new Router(c.now)
    const m = model([{ provider: 'a' }, { provider: 'b' }])
    const a = r.plan(m, (id) => providers.get(id)).find((t) => t.provider.id === 'a')!
    for (let i = 0; i < EJECT_AFTER - 1; i++) r.begin(a).failed(fail(503))
    r.begin(a).succeeded(10)
    for (let i = 0; i < EJECT_AFTER - 1; i++) r.begin(a).failed(fail(500))
    expect(r.isEjected('a', 'x')).toBe(false)
    r.begin(a).failed(fail(502))
    expect(r.isEjected('a', 'x')).toBe(true)
    for (let i = 0; i < 50; i++) expect(ids(r, m)).toEqual(['b'])
    c.advance(EJECTION_MS - 1)
    expect(r.isEjected('a', 'x')).toBe(true)
    c.advance(1)
    expect(ids(r, m).sort()).toEqual(['a', 'b'])
    // On probation: one more failure ejects it again, for twice as long.
    r.begin(a).failed(fail(503))
    c.advance(EJECTION_MS)
    expect(r.isEjected('a', 'x')).toBe(true)
    c.advance(EJECTION_MS)
    expect(r.isEjected('a', 'x')).toBe(false)
  })

  test('4xx and 429 never eject; the last healthy target is still served when everything is ejected', () => {
    const c = clock()
    const r = new Router(c.now)
    const m = model([{ provider: 'a' }, { provider: 'b' }])
    const [first, second] = r.plan(m, (id) => providers.get(id))
    for (let i = 0; i < 20; i++) r.begin(first!).failed(fail(400))
    for (let i = 0; i < 20; i++) r.begin(first!).failed(fail(429))
    expect(r.isEjected(first!.provider.id, 'x')).toBe(false)
    for (let i = 0; i < EJECT_AFTER; i++) r.begin(first!).failed(fail(503))
    c.advance(1000)
    for (let i = 0; i < EJECT_AFTER; i++) r.begin(second!).failed(fail(503))
    // Both out: serve anyway, the one back soonest first.
    expect(ids(r, m)).toEqual([first!.provider.id, second!.provider.id])
  })

  test('least-busy prefers the target with fewer requests in flight', () => {
    const r = new Router()
    const m = model([{ provider: 'a' }, { provider: 'b' }], 'least-busy')
    const held = [r.begin(r.plan(m, (id) => providers.get(id))[0]!)]
    for (let i = 0; i < 20; i++) held.push(r.begin(r.plan(m, (id) => providers.get(id))[0]!))
    const busy = (id: string) => held.filter((h) => h.target.provider.id === id).length
    expect(Math.abs(busy('a') - busy('b'))).toBe(1)
    // Released slots count no more.
    for (const h of held.filter((h) => h.target.provider.id === 'a')) h.release()
    for (let i = 0; i < 5; i++) expect(ids(r, m)[0]).toBe('a')
  })

  test('lowest-latency tries unmeasured targets, then prefers the fastest first byte', () => {
    const r = new Router()
    const m = model([{ provider: 'a' }, { provider: 'b' }], 'lowest-latency')
    const first = r.plan(m, (id) => providers.get(id))[0]!
    r.begin(first).succeeded(200)
    const second = r.plan(m, (id) => providers.get(id))[0]!
    expect(second.provider.id).not.toBe(first.provider.id)
    r.begin(second).succeeded(20)
    for (let i = 0; i < 20; i++) expect(ids(r, m)[0]).toBe(second.provider.id)
  })

  test('several keys are used in turn; a key told to wait by a 429 rests for Retry-After', () => {
    const c = clock()
    const r = new Router(c.now)
    const multi = new Map([['a', provider('a', ['k1', 'k2', 'k3'])]])
    const m = model([{ provider: 'a' }])
    const key = () => r.plan(m, (id) => multi.get(id))[0]!
    expect([key(), key(), key(), key()].map((t) => t.provider.apiKey)).toEqual(['k1', 'k2', 'k3', 'k1'])
    const t = key() // k2
    r.begin(t).failed(fail(429, { 'retry-after': '10' }))
    expect([key(), key(), key(), key()].map((t) => t.provider.apiKey)).toEqual(['k3', 'k1', 'k3', 'k1'])
    c.advance(10_000)
    expect([key(), key(), key()].map((t) => t.provider.apiKey)).toEqual(['k2', 'k3', 'k1'])
  })

  test('the retry budget allows extra attempts for 20% of requests; backoff is jittered within 250 ms', () => {
    const r = new Router()
    const m = model([{ provider: 'a' }])
    let retries = 0
    for (let i = 0; i < 1000; i++) {
      r.plan(m, (id) => providers.get(id))
      if (r.takeRetry()) retries++
    }
    expect(retries).toBe(200)
    const delays = Array.from({ length: 200 }, (_, i) => backoffMs(i % 6))
    expect(delays.every((d) => d >= 0 && d <= BACKOFF_CAP_MS)).toBe(true)
    expect(new Set(delays).size).toBeGreaterThan(150)
    expect(retryAfterMs('3')).toBe(3000)
    expect(retryAfterMs(new Date(Date.now() + 5000).toUTCString())).toBeGreaterThan(3000)
    expect(retryAfterMs('soon')).toBe(0)
  })
})
