import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SQL } from 'bun'
import { estimatePromptTokens } from '../../src/plugin-sdk/tokens.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startFaultProxy } from '../helpers/fault-proxy.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/** Every request that reached a provider is one ledger row with its cost, aborted streams included. */
for (const engine of ['sqlite', 'postgres'] as const) {
  describe(engine, () => {
    let fake: FakeOpenAI
    let gw: TestGateway
    let database: Awaited<ReturnType<typeof createTestDatabase>> | null = null
    let key: { id: string; key: string }

    beforeAll(async () => {
      fake = await startFakeOpenAI()
      if (engine === 'postgres') database = await createTestDatabase()
      gw = await startGateway(database ? { databaseURL: database.url, encryptionKey: 'spend-test-key' } : {})
      await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
      // gpt-4o at list price ($2.50 / $10 per million); a second mapping with its own negotiated price.
      await gw.admin('POST', '/models', { name: 'list', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
      await gw.admin('POST', '/models', { name: 'deal', targets: [{ provider: 'fake', model: 'gpt-4o', price: { input: 1, output: 2 } }] })
      key = await gw.admin('POST', '/keys', { name: 'spender' })
    })
    afterAll(async () => {
      await gw.close()
      await database?.drop()
      fake.stop()
    })

    const chat = (model: string, content: string, extra: Record<string, unknown> = {}, signal?: AbortSignal) =>
      fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content }], ...extra }),
        signal,
      })
    const ledger = async () => {
      await gw.gateway.ledger.flush()
      const rows: any[] = await gw.gateway.store.sql`SELECT * FROM spend_ledger ORDER BY created_at`
      return rows.map((r) => ({
        ...r,
        prompt_tokens: Number(r.prompt_tokens),
        completion_tokens: Number(r.completion_tokens),
        cost_micros: Number(r.cost_micros),
      }))
    }

    test('cost from the price table (or the mapping override), in the header and the ledger', async () => {
      const res = await chat('list', 'Hello there')
      const body = (await res.json()) as any
      const expected = body.usage.prompt_tokens * 2.5 + body.usage.completion_tokens * 10
      expect(res.headers.get('x-conduit-cost-usd')).toBe((Math.ceil(expected) / 1e6).toFixed(6))

      const dealRes = await chat('deal', 'Hello there')
      const deal = (await dealRes.json()) as any
      expect(dealRes.headers.get('x-conduit-cost-usd')).toBe(((deal.usage.prompt_tokens + deal.usage.completion_tokens * 2) / 1e6).toFixed(6))

      const rows = await ledger()
      const row = rows.find((r) => r.request_id === res.headers.get('x-request-id'))!
      expect(row).toMatchObject({ key_id: key.id, model: 'list', provider: 'fake', upstream_model: 'gpt-4o', status: 200 })
      expect(row.cost_micros).toBe(Math.ceil(expected))
      expect(row.prompt_tokens).toBe(body.usage.prompt_tokens)
    })

    test('the ledger matches the upstream usage exactly, streams included', async () => {
      const before = await ledger()
      const ids: string[] = []
      let upstreamTokens = 0
      for (let i = 0; i < 5; i++) {
        const res = await chat('list', `message ${i}`, { stream: i % 2 === 0, stream_options: { include_usage: true } })
        ids.push(res.headers.get('x-request-id')!)
        const text = await res.text()
        const usage = i % 2 === 0 ? JSON.parse(text.trim().split('\n\n').at(-2)!.slice(6)).usage : JSON.parse(text).usage
        upstreamTokens += usage.total_tokens
      }
      const rows = (await ledger()).filter((r) => ids.includes(r.request_id))
      expect(rows.length).toBe(5)
      expect(rows.reduce((n, r) => n + r.prompt_tokens + r.completion_tokens, 0)).toBe(upstreamTokens)
      expect(rows.every((r) => r.estimated === 0 || r.estimated === false)).toBe(true)
      expect((await ledger()).length).toBe(before.length + 5)
    })

    test('aborted before the first token: the input is still billed', async () => {
      const controller = new AbortController()
      const pending = chat('list', 'slow-first-byte:2000', { stream: true }, controller.signal).catch(() => null)
      await Bun.sleep(200)
      controller.abort()
      await pending
      const deadline = Date.now() + 2000
      let row: any
      while (!row && Date.now() < deadline) {
        row = (await ledger()).find((r) => Number(r.aborted) === 1 && r.completion_tokens === 0)
        if (!row) await Bun.sleep(50)
      }
      expect(row).toBeDefined()
      expect(row.prompt_tokens).toBeGreaterThan(0)
      expect(row.cost_micros).toBeGreaterThan(0)
    })

    test('usage reports: the admin view by key, model, provider and day; a key sees only its own', async () => {
      const all = (await ledger()).filter((r) => r.key_id === key.id)
      const other = await gw.admin('POST', '/keys', { name: 'other' })
      await fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${other.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'list', messages: [{ role: 'user', content: 'hi' }] }),
      })
      await gw.gateway.ledger.flush()

      const admin = await gw.admin('GET', '/usage')
      expect(admin.total.requests).toBe(all.length + 1)
      expect(admin.by_key.map((r: any) => r.key).sort()).toEqual([key.id, other.id].sort())
      expect(admin.by_model.map((r: any) => r.model).sort()).toEqual(['deal', 'list'])
      expect(admin.by_day[0].day).toBe(new Date().toISOString().slice(0, 10))
      const micros = all.reduce((n, r) => n + r.cost_micros, 0)
      expect(admin.by_key.find((r: any) => r.key === key.id).cost_usd).toBe((micros / 1e6).toFixed(6))

      const own = (await (await fetch(`${gw.baseURL}/conduit/usage`, { headers: { authorization: `Bearer ${other.key}` } })).json()) as any
      expect(own.total.requests).toBe(1)
      expect(own.by_model).toEqual([expect.objectContaining({ model: 'list', requests: 1 })])
      const bad = await gw.adminRaw('GET', '/usage?from=yesterday')
      expect(bad.status).toBe(400)
    })

    /*
     * BU4. The row: the mock streams 100 tokens 20 ms apart and the client leaves after 10. The fake's slow stream
     * has 20 content chunks (one token each) after its role chunk; the client leaves after reading 10 of them.
     * Like OpenAI, the fake reports usage only in its last chunk, which an aborted stream never reaches: the row's
     * "prompt = the mock's prompt" becomes the gateway's own prompt estimate, and the row says it was estimated.
     * Last in this block: its key would change the usage report's totals above.
     */
    test('BU4: a stream aborted after 10 tokens: one row within 2 s, its prompt and 10–12 tokens; the budget hold settles to it', async () => {
      const BUDGET_MICROS = 1_000_000
      const budgeted = await gw.admin('POST', '/keys', { name: 'bu4', budget: { usd: BUDGET_MICROS / 1e6, period: 'total' } })
      const send = (content: string, extra: Record<string, unknown>, signal?: AbortSignal) =>
        fetch(`${gw.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${budgeted.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'list', messages: [{ role: 'user', content }], ...extra }),
          signal,
        })
      const controller = new AbortController()
      const content = 'slow-stream:20'
      const res = await send(content, { stream: true }, controller.signal)
      const id = res.headers.get('x-request-id')!
      const reader = res.body!.getReader()
      const decoder = new TextDecoder()
      let buffered = ''
      let tokens = 0
      while (tokens < 10) {
        const { value, done } = await reader.read()
        if (done) break
        buffered += decoder.decode(value, { stream: true })
        const events = buffered.split('\n\n')
        buffered = events.pop()!
        for (const event of events) if (event.startsWith('data: {') && JSON.parse(event.slice(6)).choices[0]?.delta?.content) tokens++
      }
      controller.abort()
      const aborted = performance.now()
      expect(tokens).toBe(10)

      let rows: any[] = []
      while (rows.length === 0 && performance.now() - aborted < 2000) {
        rows = (await ledger()).filter((r) => r.request_id === id)
        if (rows.length === 0) await Bun.sleep(20)
      }
      const billedAfterMs = performance.now() - aborted
      expect(rows.length).toBe(1)
      const [row] = rows
      expect(Number(row.aborted)).toBe(1)
      expect(Number(row.estimated)).toBe(1)
      expect(row.prompt_tokens).toBe(estimatePromptTokens({ messages: [{ role: 'user', content }] }))
      expect(row.completion_tokens).toBeGreaterThanOrEqual(tokens)
      expect(row.completion_tokens).toBeLessThanOrEqual(tokens + 2)
      // gpt-4o's list price: 2.5 µ$ per prompt token, 10 µ$ per completion token.
      expect(row.cost_micros).toBe(Math.ceil(row.prompt_tokens * 2.5 + row.completion_tokens * 10))

      // The hold (its prompt's bytes and 4,096 tokens at the dearest price) was settled to exactly that cost:
      // what a probe sees left is the budget, less the row, less the probe's own cost.
      const probe = await send('hi', { max_tokens: 1 })
      expect(probe.status).toBe(200)
      const micros = (name: string) => Math.round(Number(probe.headers.get(name)) * 1e6)
      expect(micros('x-conduit-budget-remaining-usd')).toBe(BUDGET_MICROS - row.cost_micros - micros('x-conduit-cost-usd'))
      const billed = `${row.prompt_tokens} + ${row.completion_tokens} tokens, ${row.cost_micros} µ$`
      console.log(`BU4 (${engine}): billed ${billedAfterMs.toFixed(0)} ms after the abort: ${billed}`)
    })

    test('a target without a price: served, recorded at $0 flagged unpriced in the ledger, the report and /metrics', async () => {
      // No override and no catalog entry: nobody knows what it costs.
      await gw.admin('POST', '/models', { name: 'own', targets: [{ provider: 'fake', model: 'our-own-finetune-7b' }] })
      const metric = async () => {
        const text = await (await fetch(`${gw.origin}/metrics`)).text()
        return Number(/^conduit_unpriced_requests_total\{provider="fake",model="our-own-finetune-7b"\} (\d+)$/m.exec(text)?.[1] ?? 0)
      }
      const before = await metric()
      const res = await chat('own', 'hello')
      expect(res.status).toBe(200)
      const id = res.headers.get('x-request-id')
      expect(res.headers.get('x-conduit-cost-usd')).toBe('0.000000')
      await res.text()
      const row = (await ledger()).find((r) => r.request_id === id)!
      expect(row.cost_micros).toBe(0)
      expect(Number(row.unpriced)).toBe(1)
      expect(Number((await ledger()).find((r) => r.model === 'list')!.unpriced)).toBe(0)
      expect(await metric()).toBe(before + 1)
      const report = await gw.admin('GET', `/usage?key=${key.id}`)
      expect(report.by_model.find((r: any) => r.model === 'own').unpriced_requests).toBe(1)
      expect(report.total.unpriced_requests).toBe(1)
    })

    test("a deleted key's spend is still reported for its id; a name no key has is a 404", async () => {
      const doomed = await gw.admin('POST', '/keys', { name: 'doomed' })
      const res = await fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${doomed.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'list', messages: [{ role: 'user', content: 'hello' }] }),
      })
      expect(res.status).toBe(200)
      const cost = res.headers.get('x-conduit-cost-usd')
      await res.text()
      await gw.gateway.ledger.flush()
      await gw.admin('DELETE', `/keys/${doomed.id}`)
      const report = await gw.admin('GET', `/usage?key=${doomed.id}`)
      expect({ requests: report.total.requests, cost: report.total.cost_usd }).toEqual({ requests: 1, cost })
      expect((await gw.adminRaw('GET', '/usage?key=doomed')).status).toBe(404)
    })
  })
}

describe('the database blips', () => {
  test('PostgreSQL unreachable for a while: requests keep flowing, rows wait in the queue, none is lost', async () => {
    const fake = await startFakeOpenAI()
    const database = await createTestDatabase()
    const pg = new URL(database.url)
    const proxy = await startFaultProxy({ hostname: pg.hostname, port: Number(pg.port || 5432) })
    const viaProxy = new URL(database.url)
    viaProxy.port = String(proxy.port)
    const gw = await startGateway({ databaseURL: viaProxy.toString(), encryptionKey: 'blip-test-key' })
    try {
      await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
      await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
      const { key } = await gw.admin('POST', '/keys', { name: 'blip' })
      const chat = (i: number) =>
        fetch(`${gw.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `message ${i}` }], stream: i % 2 === 0 }),
        }).then(async (r) => (await r.text(), r.status))
      expect(await chat(0)).toBe(200) // the key and the catalog are now cached

      proxy.refuse()
      const during = await Promise.all(Array.from({ length: 40 }, (_, i) => chat(i + 1)))
      expect(during.every((s) => s === 200)).toBe(true)
      await Bun.sleep(500) // several flush attempts fail meanwhile
      expect(gw.gateway.ledger.pending).toBeGreaterThanOrEqual(40)

      proxy.restore()
      const deadline = Date.now() + 10_000
      while (gw.gateway.ledger.pending > 0 && Date.now() < deadline) await Bun.sleep(100)
      expect(gw.gateway.ledger.pending).toBe(0)
      const direct = new SQL(database.url)
      const [row] = await direct`SELECT COUNT(*) AS n, SUM(prompt_tokens + completion_tokens) AS tokens FROM spend_ledger`
      await direct.close()
      expect(Number(row.n)).toBe(41)
      expect(Number(row.tokens)).toBe(fake.usageLog.reduce((sum, u) => sum + u.prompt_tokens + u.completion_tokens, 0))
    } finally {
      await gw.close()
      proxy.stop()
      await fake.stop()
      await database.drop()
    }
  }, 30_000)
})
