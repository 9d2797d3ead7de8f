import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { createTestDatabase } from '../helpers/postgres.ts'
import { validateSchema } from '../helpers/openapi.ts'

/**
 * GET /admin/v1/requests: one record per request (refusals included) with status, latency, TTFT, attempts,
 * error code, user and client address; newest first, cursor paging, filters; bodies only when configured; old
 * rows deleted past request_log.retention_days. On SQLite and PostgreSQL.
 */
for (const engine of ['sqlite', 'postgres'] as const) {
  describe(engine, () => {
    let fake: FakeOpenAI
    let gw: TestGateway
    let database: Awaited<ReturnType<typeof createTestDatabase>> | null = null
    let alice: { id: string; key: string }
    let bob: { id: string; key: string }

    beforeAll(async () => {
      fake = await startFakeOpenAI()
      if (engine === 'postgres') database = await createTestDatabase()
      gw = await startGateway({ ...(database ? { databaseURL: database.url, encryptionKey: 'records-test-key' } : {}), requestLog: { retentionDays: 7, recordBodies: true } })
      await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
      await gw.admin('POST', '/models', { name: 'm1', targets: [{ provider: 'fake', model: 'gpt-4o-mini', price: { input: 1, output: 2 } }] })
      await gw.admin('POST', '/models', { name: 'm2', targets: [{ provider: 'fake', model: 'gpt-4o-mini' }] })
      alice = await gw.admin('POST', '/keys', { name: 'alice' })
      bob = await gw.admin('POST', '/keys', { name: 'bob', allowed_models: ['m1'] })
      const chat = (key: string, model: string, content: string, extra: Record<string, unknown> = {}) =>
        fetch(`${gw.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model, messages: [{ role: 'user', content }], ...extra }),
        }).then((r) => r.text())
      // In order, so "newest first" is known: 5 by alice (one streamed, one failing upstream), 2 by bob (one refused), 1 without a key.
      await chat(alice.key, 'm1', 'one', { user: 'u-1' })
      await chat(alice.key, 'm1', 'two', { stream: true })
      await chat(alice.key, 'm2', 'three')
      await chat(alice.key, 'm1', 'fail-400')
      await chat(alice.key, 'm1', 'five')
      await chat(bob.key, 'm1', 'six')
      await chat(bob.key, 'm2', 'seven') // 403 model_not_allowed
      await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', body: '{}' }) // 401
      await gw.gateway.records!.flush()
    })
    afterAll(async () => {
      await gw.close()
      await database?.drop()
      await fake.stop()
    })

    test('every request is a record: status, error code, latency, TTFT, attempts, tokens, cost, user, client address', async () => {
      const page = await gw.admin('GET', '/requests')
      expect(page.object).toBe('list')
      expect(page.data.length).toBe(8)
      expect(page.data.map((r: any) => r.status)).toEqual([401, 403, 200, 200, 400, 200, 200, 200])
      const [anonymous, refused, bobs] = page.data
      expect(anonymous).toMatchObject({ key_id: null, status: 401, error_code: 'missing_api_key', provider: null, attempts: 0, client_ip: '127.0.0.1' })
      expect(refused).toMatchObject({ key_id: bob.id, key_name: 'bob', model: 'm2', status: 403, error_code: 'model_not_allowed', attempts: 0 })
      expect(bobs).toMatchObject({ key_name: 'bob', model: 'm1', provider: 'fake', upstream_model: 'gpt-4o-mini', status: 200, attempts: 1, error_code: null })
      const first = page.data.at(-1)
      expect(first).toMatchObject({ key_id: alice.id, user: 'u-1', stream: false, aborted: false, endpoint: 'chat', client_ip: '127.0.0.1' })
      expect(first.prompt_tokens).toBeGreaterThan(0)
      expect(Number(first.cost_usd)).toBeGreaterThan(0)
      expect(first.latency_ms).toBeGreaterThan(0)
      expect(first.ttft_ms).toBeGreaterThan(0)
      const streamed = page.data.at(-2)
      expect(streamed.stream).toBe(true)
      expect(streamed.ttft_ms).toBeLessThanOrEqual(streamed.latency_ms)
      expect(page.data.find((r: any) => r.status === 400)).toMatchObject({ provider: 'fake', attempts: 1, completion_tokens: 0 }) // the fake's 400 carries no code, like OpenAI's
      // Newest first, by time then id.
      const times = page.data.map((r: any) => r.created_at)
      expect(times).toEqual(times.toSorted((a: number, b: number) => b - a))
      // Bodies only on the detail view, and only because this gateway records them.
      expect(page.data.every((r: any) => r.request_body === null)).toBe(true)
      const detail = await gw.admin('GET', `/requests/${first.id}`)
      expect(JSON.parse(detail.request_body)).toMatchObject({ model: 'm1', user: 'u-1', messages: [{ role: 'user', content: 'one' }] })
    })

    test('cursor paging walks every record once, newest first', async () => {
      const seen: string[] = []
      let cursor: string | null = null
      let pages = 0
      do {
        const page: any = await gw.admin('GET', `/requests?limit=3${cursor ? `&cursor=${cursor}` : ''}`)
        expect(page.data.length).toBeLessThanOrEqual(3)
        seen.push(...page.data.map((r: any) => r.id))
        expect(page.has_more).toBe(page.next_cursor !== null)
        cursor = page.next_cursor
        pages++
      } while (cursor)
      expect(pages).toBe(3)
      const all = (await gw.admin('GET', '/requests?limit=200')).data.map((r: any) => r.id)
      expect(seen).toEqual(all)
    })

    test('filters: key (id or name), model, provider, user, status code or class', async () => {
      const ids = async (query: string) => (await gw.admin('GET', `/requests?${query}`)).data.map((r: any) => r.status)
      expect(await ids(`key=${alice.id}`)).toEqual([200, 400, 200, 200, 200])
      expect(await ids('key=bob')).toEqual([403, 200])
      expect(await ids('model=m2')).toEqual([403, 200])
      expect(await ids('provider=fake&status=2xx')).toEqual([200, 200, 200, 200, 200])
      expect(await ids('status=error')).toEqual([401, 403, 400])
      expect(await ids('status=403')).toEqual([403])
      expect(await ids('user=u-1')).toEqual([200])
      expect(await ids(`from=${Math.floor(Date.now() / 1000) + 60}`)).toEqual([])
    })

    test('bad parameters are 400s in the OpenAI envelope; an unknown id is a 404', async () => {
      for (const [query, param] of [
        ['limit=0', 'limit'],
        ['limit=201', 'limit'],
        ['status=teapot', 'status'],
        ['cursor=bm9wZQ', 'cursor'],
        ['from=yesterday', 'from'],
      ]) {
        const res = await gw.adminRaw('GET', `/requests?${query}`)
        expect({ query, status: res.status }).toEqual({ query, status: 400 })
        const body = (await res.json()) as any
        validateSchema('ErrorResponse', body)
        expect(body.error.param).toBe(param)
      }
      const missing = await gw.adminRaw('GET', '/requests/req_nope')
      expect(missing.status).toBe(404)
    })

    test('rows past the retention are deleted; newer ones stay', async () => {
      const store = gw.gateway.store
      const eightDaysAgo = Date.now() - 8 * 86_400_000
      await store.sql`UPDATE request_records SET created_at = ${eightDaysAgo} WHERE status = 401`
      const removed = await gw.gateway.records!.purge()
      expect(removed).toBe(1)
      const left = (await gw.admin('GET', '/requests')).data
      expect(left.length).toBe(7)
      expect(left.some((r: any) => r.status === 401)).toBe(false)
    })

    test('a purge of many rows deletes them a chunk at a time, with turns of the event loop in between', async () => {
      // SQLite runs statements on the event loop: one DELETE of an hour of records froze every request meanwhile.
      const store = gw.gateway.store
      const kept = (await gw.admin('GET', '/requests')).data.length
      const monthAgo = Date.now() - 30 * 86_400_000
      const old = Array.from({ length: 2_500 }, (_, i) => ({
        ...{ request_id: `req_old${String(i).padStart(6, '0')}`, created_at: monthAgo + i, key_id: alice.id, endpoint: 'chat', model: 'm1', provider: null, upstream_model: null },
        ...{ status: 200, error_code: null, stream: 0, aborted: 0, attempts: 1, latency_ms: 1, ttft_ms: null, prompt_tokens: 0, completion_tokens: 0, cost_micros: 0 },
        ...{ estimated: 0, end_user: null, client_ip: null, request_body: null },
      }))
      await store.insertRequestRecords(old)
      let turns = 0
      let purging = true
      const turn = () => {
        if (!purging) return
        turns++
        setImmediate(turn)
      }
      setImmediate(turn)
      expect(await gw.gateway.records!.purge()).toBe(2_500)
      purging = false
      // Only SQLite runs a statement on the event loop; PostgreSQL's await gives the loop its turns whatever the chunks.
      if (engine === 'sqlite') expect(turns).toBeGreaterThanOrEqual(2)
      expect((await gw.admin('GET', '/requests')).data.length).toBe(kept)
    })

    test("GET /admin/v1/keys: each key's last_used_at is its newest request record, null for a key never used", async () => {
      const unused = await gw.admin('POST', '/keys', { name: 'unused' })
      const records = (await gw.admin('GET', '/requests')).data
      const keys = (await gw.admin('GET', '/keys')).data
      const lastUsed = (id: string) => keys.find((k: any) => k.id === id).last_used_at
      for (const { id } of [alice, bob]) {
        const newest = Math.max(...records.filter((r: any) => r.key_id === id).map((r: any) => r.created_at))
        expect(lastUsed(id)).toBe(Math.floor(newest))
      }
      expect(lastUsed(unused.id)).toBeNull()
    })
  })
}

test('bodies are not recorded by default, and retention_days 0 records nothing', async () => {
  const byDefault = await startGateway()
  const none = await startGateway({ requestLog: { retentionDays: 0, recordBodies: false } })
  try {
    for (const gw of [byDefault, none]) {
      await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer condt_nope' }, body: '{"model":"x","messages":[]}' })
    }
    await byDefault.gateway.records!.flush()
    const [record] = (await byDefault.admin('GET', '/requests')).data
    expect(record.status).toBe(401)
    expect((await byDefault.admin('GET', `/requests/${record.id}`)).request_body).toBeNull()
    expect(none.gateway.records).toBeNull()
    expect((await none.admin('GET', '/requests')).data).toEqual([])
  } finally {
    await byDefault.close()
    await none.close()
  }
})
