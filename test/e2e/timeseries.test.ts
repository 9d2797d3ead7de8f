import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { binOf, quantile, TimeSeries, MINUTE_MS } from '../../src/core/timeseries.ts'
import { createLogger } from '../../src/services/logger.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { createTestDatabase } from '../helpers/postgres.ts'
import { validateSchema } from '../helpers/openapi.ts'

/**
 * GET /admin/v1/metrics/timeseries: 1-minute buckets kept in the store. Two gateways on one PostgreSQL show one
 * sum; a restart loses nothing; a key's and a model's series; step and range checks. On SQLite and PostgreSQL.
 */
const chat = (gw: TestGateway, key: string, model: string, content = 'hi', extra: Record<string, unknown> = {}) =>
  fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content }], ...extra }),
  }).then((r) => r.text())

const settle = (gw: TestGateway) => gw.gateway.timeseries.flush()

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(engine, () => {
    let fake: FakeOpenAI
    let gw: TestGateway
    let database: Awaited<ReturnType<typeof createTestDatabase>> | null = null
    let key: { id: string; key: string }
    let other: { id: string; key: string }

    beforeAll(async () => {
      fake = await startFakeOpenAI()
      if (engine === 'postgres') database = await createTestDatabase()
      gw = await startGateway(database ? { databaseURL: database.url, encryptionKey: 'series-test-key' } : {})
      await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
      await gw.admin('POST', '/models', { name: 'm1', targets: [{ provider: 'fake', model: 'gpt-4o-mini', price: { input: 100, output: 200 } }] })
      await gw.admin('POST', '/models', { name: 'm2', targets: [{ provider: 'fake', model: 'gpt-4o-mini' }] })
      key = await gw.admin('POST', '/keys', { name: 'series' })
      other = await gw.admin('POST', '/keys', { name: 'other' })
      await chat(gw, key.key, 'm1')
      await chat(gw, key.key, 'm1', 'stream me', { stream: true })
      await chat(gw, key.key, 'm2', 'fail-500')
      await chat(gw, other.key, 'm2')
      await settle(gw)
    })
    afterAll(async () => {
      await gw.close()
      await database?.drop()
      await fake.stop()
    })

    test('one point per minute over the last hour by default, every point present; totals, rates and percentiles', async () => {
      const series = await gw.admin('GET', '/metrics/timeseries')
      expect(series.object).toBe('timeseries')
      expect(series.step_seconds).toBe(60)
      expect(series.t.length).toBeGreaterThanOrEqual(60)
      expect(series.t.length).toBeLessThanOrEqual(61)
      for (const column of ['requests', 'errors', 'requests_per_second', 'tokens_per_second', 'error_rate', 'cost_usd', 'latency_p50_ms', 'latency_p95_ms', 'ttft_p50_ms', 'ttft_p95_ms']) {
        expect({ column, length: series[column].length }).toEqual({ column, length: series.t.length })
      }
      expect(series.t[1] - series.t[0]).toBe(60)
      const { totals } = series
      // The fake's 500 is retried (2 more attempts) and counted once, as an error.
      expect(totals).toMatchObject({ requests: 4, errors: 1, error_rate: 0.25 })
      expect(Number(totals.cost_usd)).toBeGreaterThan(0)
      expect(totals.latency_p50_ms).toBeGreaterThan(0)
      expect(totals.latency_p95_ms).toBeGreaterThanOrEqual(totals.latency_p50_ms)
      expect(totals.ttft_p50_ms).toBeGreaterThan(0)
      const last = series.requests.findLastIndex((n: number) => n > 0)
      expect(series.requests.reduce((a: number, b: number) => a + b, 0)).toBe(4)
      expect(series.requests_per_second[last]).toBeCloseTo(series.requests[last] / 60, 3)
      expect(series.tokens_per_second[last]).toBeGreaterThan(0)
    })

    test('for one key (id or name) and one model', async () => {
      const mine = await gw.admin('GET', '/metrics/timeseries?key=series')
      expect(mine.totals).toMatchObject({ requests: 3, errors: 1 })
      const theirs = await gw.admin('GET', `/metrics/timeseries?key=${other.id}`)
      expect(theirs.totals).toMatchObject({ requests: 1, errors: 0 })
      const m2 = await gw.admin('GET', '/metrics/timeseries?model=m2')
      expect(m2.totals).toMatchObject({ requests: 2, errors: 1 })
    })

    test('a day in 10-minute steps sums the same minutes', async () => {
      const now = Math.floor(Date.now() / 1000)
      const day = await gw.admin('GET', `/metrics/timeseries?from=${now - 86_400}&to=${now + 60}&step=600`)
      expect(day.step_seconds).toBe(600)
      expect(day.t.length).toBeGreaterThanOrEqual(144)
      expect(day.totals.requests).toBe(4)
    })

    test('bad ranges and steps are 400s in the OpenAI envelope', async () => {
      for (const [query, param] of [
        ['step=30', 'step'],
        ['step=90', 'step'],
        ['from=2030-01-01&to=2029-01-01', 'from'],
        ['from=0&to=99999999999&step=60', 'step'],
        ['to=tomorrow', 'to'],
      ]) {
        const res = await gw.adminRaw('GET', `/metrics/timeseries?${query}`)
        expect({ query, status: res.status }).toEqual({ query, status: 400 })
        const body = (await res.json()) as any
        validateSchema('ErrorResponse', body)
        expect(body.error.param).toBe(param)
      }
    })

    if (engine === 'postgres') {
      test('two gateways on one database: each counts its own traffic, the series shows the sum', async () => {
        const second = await startGateway({ databaseURL: database!.url, encryptionKey: 'series-test-key' })
        try {
          await chat(second, key.key, 'm1')
          await chat(second, key.key, 'm1')
          await settle(second)
          for (const instance of [gw, second]) {
            expect((await instance.admin('GET', '/metrics/timeseries')).totals.requests).toBe(6)
          }
        } finally {
          await second.close()
        }
        // The second instance's rows outlive it.
        expect((await gw.admin('GET', '/metrics/timeseries')).totals.requests).toBe(6)
      })
    }

    test('a restart loses nothing: what was counted but not yet written is written on close, and read back after', async () => {
      // Its own instance on the same store (SQLite: the same folder), so the restart does not disturb the others.
      const dir = mkdtempSync(path.join(tmpdir(), 'conduit-series-'))
      const options = database ? { databaseURL: database.url, encryptionKey: 'series-test-key' } : { dataDir: dir }
      try {
        const first = await startGateway(options)
        const before = (await first.admin('GET', '/metrics/timeseries')).totals.requests
        await chat(first, 'condt_not_a_key', 'm1') // a refusal counts too; in memory only, the flush timer has not run
        await first.close()
        const second = await startGateway(options)
        expect((await second.admin('GET', '/metrics/timeseries')).totals.requests).toBe(before + 1)
        await second.close()
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })

    test('a settled point is read once and kept: a refresh reads only the recent points; a late bucket shows once its point expires', async () => {
      const store = gw.gateway.store
      const series = new TimeSeries(store, createLogger('error'), 300)
      const metricPoints = store.metricPoints
      const reads: number[][] = []
      store.metricPoints = (from, to, ...rest) => (reads.push([from, to]), metricPoints.call(store, from, to, ...rest))
      try {
        const now = Date.now()
        const hour = now - (now % 3_600_000) - 3 * 3_600_000
        const bucket = (minute: number, requests: number) => ({
          minute, instance: 'settled-test', key_id: 'settled-key', model: 'm', requests, errors: 0,
          prompt_tokens: 0, completion_tokens: 0, cost_micros: 0, latency_hist: `${binOf(100)}:${requests}`, ttft_hist: '',
        })
        await store.upsertMetricBuckets([bucket(hour, 5), bucket(hour + 25 * MINUTE_MS, 7)])
        const range = { from: now - 4 * 3_600_000, to: now, stepMs: 600_000 }
        const first = await series.query(range, { keyId: 'settled-key' }, now)
        expect(first.totals.requests).toBe(12)
        expect(first.totals.latency_p50_ms).toBe(quantile(Object.assign(new Array(80).fill(0), { [binOf(100)]: 1 }), 0.5))
        expect(reads).toEqual([[range.from - (range.from % range.stepMs), now]])

        // Refreshed: the same answer, and only the points that ended less than two minutes ago are read again.
        reads.length = 0
        expect(await series.query(range, { keyId: 'settled-key' }, now)).toEqual(first)
        expect(reads.length).toBe(1)
        expect(reads[0]![0]).toBeGreaterThan(now - 2 * MINUTE_MS - range.stepMs)

        // A bucket written late into a settled point (an instance back from a database outage) shows once it expires.
        await store.upsertMetricBuckets([bucket(hour + 26 * MINUTE_MS, 1)])
        expect((await series.query(range, { keyId: 'settled-key' }, now)).totals.requests).toBe(12)
        await Bun.sleep(500)
        expect((await series.query(range, { keyId: 'settled-key' }, now)).totals.requests).toBe(13)
      } finally {
        store.metricPoints = metricPoints
        await series.close()
      }
    })
  })
}

describe('histograms', () => {
  test('bins are 25% wide; a quantile lands within ±12% of the true value', () => {
    const values = Array.from({ length: 1000 }, (_, i) => 5 + i * 3) // 5 … 3002 ms
    const hist = new Array(80).fill(0)
    for (const v of values) hist[binOf(v)]++
    for (const q of [0.5, 0.95]) {
      const truth = values[Math.ceil(q * values.length) - 1]!
      const estimate = quantile(hist, q)!
      expect(Math.abs(estimate - truth) / truth).toBeLessThan(0.12)
    }
    expect(quantile(new Array(80).fill(0), 0.5)).toBeNull()
    expect(binOf(0.2)).toBe(0)
    expect(binOf(1e12)).toBe(79)
  })
})
