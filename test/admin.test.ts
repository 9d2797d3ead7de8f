import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { startGateway, type TestGateway } from './helpers/gateway.ts'
import { createTestDatabase } from './helpers/postgres.ts'
import { validateSchema } from './helpers/openapi.ts'

const PROVIDER_SECRET = 'sk-live-provider-secret-1234567890-wxyz'

/** The same admin contract on both store engines: embedded SQLite and PostgreSQL (DATABASE_URL). */
for (const engine of ['sqlite', 'postgres'] as const) {
  describe(engine, () => {
    let gw: TestGateway
    let database: Awaited<ReturnType<typeof createTestDatabase>> | null = null

    beforeAll(async () => {
      if (engine === 'postgres') database = await createTestDatabase()
      gw = await startGateway(database ? { databaseURL: database.url, encryptionKey: 'test-encryption-key' } : {})
    })
    afterAll(async () => {
      await gw.close()
      await database?.drop()
    })

    /** Everything the store holds, as text: the SQLite files, or every row of every PostgreSQL table. */
    async function storedText(): Promise<string> {
      if (engine === 'sqlite') return readdirSync(gw.dataDir).map((f) => readFileSync(path.join(gw.dataDir, f)).toString('latin1')).join('\n')
      const rows = await Promise.all(['providers', 'virtual_keys', 'models', 'settings'].map((table) => gw.gateway.store.sql.unsafe(`SELECT * FROM ${table}`)))
      return JSON.stringify(rows)
    }

    describe('admin authentication', () => {
      test('only the master key opens the admin API', async () => {
        const virtual = (await gw.admin('POST', '/keys', { name: 'not-admin' })).key
        for (const [token, status] of [
          [undefined, 401],
          ['wrong-master-key', 401],
          [virtual, 401],
        ] as const) {
          const res = await fetch(`${gw.origin}/admin/v1/keys`, { headers: token ? { authorization: `Bearer ${token}` } : {} })
          expect(res.status).toBe(status)
          validateSchema('ErrorResponse', await res.json())
        }
        expect((await gw.adminRaw('GET', '/keys')).status).toBe(200)
      })
    })

    describe('providers', () => {
      test('the secret is never echoed, only its last four characters, and is sealed in the database', async () => {
        const created = await gw.admin('POST', '/providers', { name: 'secretive', type: 'openai', base_url: 'https://api.openai.com/v1', api_key: PROVIDER_SECRET })
        expect(created.api_key_last4).toBe('wxyz')
        const texts = [
          JSON.stringify(created),
          await (await gw.adminRaw('GET', '/providers')).text(),
          await (await gw.adminRaw('GET', `/providers/${created.id}`)).text(),
          await (await gw.adminRaw('PATCH', `/providers/${created.id}`, { options: { region: 'eu' } })).text(),
        ]
        for (const text of texts) {
          expect(text).not.toContain(PROVIDER_SECRET)
          expect(text).not.toContain('api_key_secret')
        }
        // Nothing the store holds (SQLite database, WAL and key file, or every PostgreSQL row) has the secret as text.
        const stored = await storedText()
        expect(stored).toContain(created.id)
        expect(stored).not.toContain(PROVIDER_SECRET)
      })

      test('validation, unknown type, duplicate name, lookup by name, delete guarded by models', async () => {
        const bad = await gw.adminRaw('POST', '/providers', { name: 'x', type: 'openai', base_url: 'ftp://nope' })
        expect(bad.status).toBe(400)
        expect(((await bad.json()) as any).error.param).toBe('base_url')
        const unknown = await gw.adminRaw('POST', '/providers', { name: 'x', type: 'martian' })
        expect(unknown.status).toBe(400)
        expect(((await unknown.json()) as any).error.param).toBe('type')
        await gw.admin('POST', '/providers', { name: 'groq-1', type: 'groq', api_key: 'gsk_123456' })
        expect((await gw.adminRaw('POST', '/providers', { name: 'groq-1', type: 'groq' })).status).toBe(409)
        expect((await gw.admin('GET', '/providers/groq-1')).type).toBe('groq')

        await gw.admin('POST', '/models', { name: 'fast', targets: [{ provider: 'groq-1', model: 'llama-3.3-70b' }] })
        expect((await gw.adminRaw('DELETE', '/providers/groq-1')).status).toBe(409)
        await gw.admin('DELETE', '/models/fast')
        expect((await gw.admin('DELETE', '/providers/groq-1')).deleted).toBe(true)
        expect((await gw.adminRaw('GET', '/providers/groq-1')).status).toBe(404)
      })
    })

    describe('models', () => {
      test('targets name providers by id or name; unknown providers are refused with the param', async () => {
        const p = await gw.admin('POST', '/providers', { name: 'm-prov', type: 'openai', api_key: 'sk-x' })
        const m = await gw.admin('POST', '/models', { name: 'mix', targets: [{ provider: 'm-prov', model: 'a' }, { provider: p.id, model: 'b', weight: 3, priority: 1 }] })
        expect(m.targets).toEqual([
          { provider: p.id, model: 'a', weight: 1, priority: 0 },
          { provider: p.id, model: 'b', weight: 3, priority: 1 },
        ])
        const bad = await gw.adminRaw('POST', '/models', { name: 'bad', targets: [{ provider: 'ghost', model: 'a' }] })
        expect(bad.status).toBe(400)
        expect(((await bad.json()) as any).error).toMatchObject({ param: 'targets[0].provider', code: 'invalid_value' })
        const empty = await gw.adminRaw('POST', '/models', { name: 'empty', targets: [] })
        expect(empty.status).toBe(400)
        const renamed = await gw.admin('PATCH', '/models/mix', { name: 'mix-2' })
        expect(renamed.name).toBe('mix-2')
        expect((await gw.admin('GET', '/models')).data.map((x: any) => x.name)).toContain('mix-2')
      })
    })

    describe('virtual keys', () => {
      test('PATCHes of one row at once each keep their change: a disable is never undone by a limit changed beside it', async () => {
        const provider = await gw.admin('POST', '/providers', { name: `race-${engine}`, type: 'openai', base_url: 'https://api.openai.com/v1', api_key: 'sk-race-0000' })
        const model = await gw.admin('POST', '/models', { name: `race-${engine}`, targets: [{ provider: provider.id, model: 'gpt-4o' }] })
        for (let round = 0; round < 10; round++) {
          const key = await gw.admin('POST', '/keys', { name: `race-${engine}-${round}` })
          await Promise.all([
            gw.admin('PATCH', `/keys/${key.id}`, { enabled: false }),
            gw.admin('PATCH', `/keys/${key.id}`, { rpm: 500 }),
            gw.admin('PATCH', `/keys/${key.id}`, { tpm: 9000 }),
            gw.admin('PATCH', `/models/${model.id}`, { limits: { rpm: round + 1 } }),
            gw.admin('PATCH', `/models/${model.id}`, { routing: { strategy: 'least-busy' } }),
            gw.admin('PATCH', `/providers/${provider.id}`, { options: { round } }),
            gw.admin('PATCH', `/providers/${provider.id}`, { base_url: `https://api.openai.com/v${round}` }),
          ])
          expect(await gw.admin('GET', `/keys/${key.id}`)).toMatchObject({ enabled: false, rpm: 500, tpm: 9000 })
          expect(await gw.admin('GET', `/models/${model.id}`)).toMatchObject({ limits: { rpm: round + 1 }, routing: { strategy: 'least-busy' } })
          expect(await gw.admin('GET', `/providers/${provider.id}`)).toMatchObject({ options: { round }, base_url: `https://api.openai.com/v${round}` })
        }
      })

      test('names taken at once: two creates or renames of one name race, one wins and the other is a 409, never two keys', async () => {
        for (let round = 0; round < 5; round++) {
          const name = `racing-${engine}-${round}`
          const created = await Promise.all([0, 1, 2].map(() => gw.adminRaw('POST', '/keys', { name })))
          expect(created.map((r) => r.status).sort()).toEqual([201, 409, 409])
          for (const kind of ['providers', 'models'] as const) {
            const body = kind === 'providers' ? { name, type: 'openai', base_url: 'https://api.openai.com/v1' } : { name, targets: [{ provider: name, model: 'gpt-4o' }] }
            expect((await Promise.all([0, 1].map(() => gw.adminRaw('POST', `/${kind}`, body)))).map((r) => r.status).sort()).toEqual([201, 409])
          }
          const [a, b] = await Promise.all([gw.admin('POST', '/keys', { name: `${name}-a` }), gw.admin('POST', '/keys', { name: `${name}-b` })])
          const renamed = await Promise.all([a, b].map((k) => gw.adminRaw('PATCH', `/keys/${k.id}`, { name: `${name}-c` })))
          expect(renamed.map((r) => r.status).sort()).toEqual([200, 409])
          for (const r of [...created, ...renamed]) if (r.status === 409) expect(((await r.json()) as any).error.code).toBe('conflict')
        }
        const names = (await gw.admin('GET', '/keys')).data.map((k: any) => k.name)
        expect(names.length).toBe(new Set(names).size)
      })

      test('lifecycle: the plaintext appears once; lists show prefix and last four; hashes only in the store', async () => {
        const created = await gw.admin('POST', '/keys', { name: 'team-a', allowed_models: ['gpt-*'], metadata: { team: 'a' } })
        expect(created.key).toMatch(/^condt_[0-9A-Za-z]{43}[0-9a-z]{7}$/)
        expect(created.key_prefix).toBe(created.key.slice(0, 10))
        expect(created.key_last4).toBe(created.key.slice(-4))

        const listText = await (await gw.adminRaw('GET', '/keys')).text()
        const oneText = await (await gw.adminRaw('GET', `/keys/${created.id}`)).text()
        const patched = await gw.admin('PATCH', `/keys/${created.id}`, { name: 'team-a2', enabled: false })
        for (const text of [listText, oneText, JSON.stringify(patched)]) expect(text).not.toContain(created.key)
        expect(patched).toMatchObject({ name: 'team-a2', enabled: false, allowed_models: ['gpt-*'], metadata: { team: 'a' } })
        expect(JSON.parse(oneText).key).toBeUndefined()

        const stored = await storedText()
        expect(stored).toContain(created.id)
        expect(stored).not.toContain(created.key)

        expect((await gw.admin('DELETE', `/keys/${created.id}`)).deleted).toBe(true)
        expect((await gw.adminRaw('GET', `/keys/${created.id}`)).status).toBe(404)
      })

      test('expiry accepts ISO dates and unix seconds; bad input is a 400 in the envelope', async () => {
        const iso = await gw.admin('POST', '/keys', { name: 'iso', expires_at: '2030-01-01T00:00:00Z' })
        expect(iso.expires_at).toBe(Date.parse('2030-01-01T00:00:00Z') / 1000)
        const unix = await gw.admin('POST', '/keys', { name: 'unix', expires_at: 1900000000 })
        expect(unix.expires_at).toBe(1900000000)
        // A date alone: midnight UTC.
        const day = await gw.admin('POST', '/keys', { name: 'day', expires_at: '2031-06-01' })
        expect(day.expires_at).toBe(Date.parse('2031-06-01T00:00:00Z') / 1000)
        const words = await gw.adminRaw('POST', '/keys', { name: 'words', expires_at: 'June 1st' })
        expect(((await words.json()) as any).error.message).toBe("Invalid value for 'expires_at': expected an ISO 8601 date or date-time or an integer of at least 0.")
        for (const body of [{ name: 'x', expires_at: 'tomorrow' }, { name: '' }, { allowed_models: ['*'] }]) {
          const res = await gw.adminRaw('POST', '/keys', body)
          expect(res.status).toBe(400)
          validateSchema('ErrorResponse', await res.json())
        }
        const malformed = await fetch(`${gw.origin}/admin/v1/keys`, {
          method: 'POST',
          headers: { authorization: 'Bearer test-master-key-0123456789', 'content-type': 'application/json' },
          body: '{"name":',
        })
        expect(malformed.status).toBe(400)
        validateSchema('ErrorResponse', await malformed.json())
      })

      test('unknown routes answer in the envelope', async () => {
        const res = await fetch(`${gw.origin}/v1/does-not-exist`, { method: 'POST' })
        expect(res.status).toBe(404)
        validateSchema('ErrorResponse', await res.json())
      })
    })
  })
}
