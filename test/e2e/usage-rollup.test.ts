import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { usageRange, usageReport } from '../../src/core/usage.ts'
import type { SpendRow } from '../../src/store/ledger.ts'
import { Store } from '../../src/store/store.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/**
 * Usage reports read the ledger's per-hour totals (spend-rollup.ts), not the ledger: the totals must be exactly what
 * the ledger holds, for every grouping, whatever the batches, retries and NULLs, on both engines.
 */
const HOUR = 3_600_000
const START = Date.UTC(2026, 10, 2, 22, 0, 0) // two UTC days, so by_day has two rows

/** A mixed ledger: keys (one NULL), models (one NULL), end users (a third NULL), three providers, 30 hours. */
function ledgerRows(count: number): SpendRow[] {
  return Array.from({ length: count }, (_, i) => ({
    request_id: `req-${String(i).padStart(6, '0')}`,
    key_id: i % 11 === 0 ? null : `key-${i % 4}`,
    endpoint: '/v1/chat/completions',
    model: i % 13 === 0 ? null : `model-${i % 3}`,
    provider: `provider-${i % 5 % 3}`,
    upstream_model: 'x',
    prompt_tokens: (i * 7) % 50,
    completion_tokens: (i * 3) % 40,
    cost_micros: (i * 31) % 1000,
    estimated: 0,
    aborted: 0,
    status: 200,
    created_at: START + Math.floor((i * 30 * HOUR) / count) + (i % 7),
    end_user: i % 3 === 0 ? null : `user-${i % 17}`,
    unpriced: i % 9 === 0 ? 1 : 0,
    audio_ms: i % 5 === 0 ? i * 10 : 0,
    characters: i % 6 === 0 ? i : 0,
    images: i % 7 === 0 ? (i % 4) + 1 : 0,
  }))
}

/** The same report computed from the ledger's rows in JavaScript, over the whole hours the range touches. */
function expectedReport(rows: SpendRow[], from: number, to: number, keyId: string | null) {
  const within = rows.filter((r) => r.created_at >= from && r.created_at < to && (keyId === null || r.key_id === keyId))
  const sum = (of: SpendRow[]) => ({
    requests: of.length,
    prompt_tokens: of.reduce((n, r) => n + r.prompt_tokens, 0),
    completion_tokens: of.reduce((n, r) => n + r.completion_tokens, 0),
    cost_usd: (of.reduce((n, r) => n + r.cost_micros, 0) / 1e6).toFixed(6),
    unpriced_requests: of.reduce((n, r) => n + r.unpriced, 0),
    audio_seconds: of.reduce((n, r) => n + r.audio_ms, 0) / 1000,
    characters: of.reduce((n, r) => n + r.characters, 0),
    images: of.reduce((n, r) => n + (r.images ?? 0), 0),
  })
  const by = (name: string, bucket: (r: SpendRow) => string | null) => {
    const groups = new Map<string | null, SpendRow[]>()
    for (const r of within) groups.set(bucket(r), [...(groups.get(bucket(r)) ?? []), r])
    return [...groups].map(([value, of]) => ({ [name]: value, ...sum(of) }))
  }
  // Over every key a user is grouped with its key: two keys' "alice" are two people.
  const byKeyUser = () => {
    const groups = new Map<string, SpendRow[]>()
    for (const r of within) groups.set(JSON.stringify([r.key_id, r.end_user]), [...(groups.get(JSON.stringify([r.key_id, r.end_user])) ?? []), r])
    return [...groups].map(([pair, of]) => ({ user: JSON.parse(pair)[1], key: JSON.parse(pair)[0], ...sum(of) }))
  }
  return {
    total: sum(within),
    by_key: by('key', (r) => r.key_id),
    by_model: by('model', (r) => r.model),
    by_provider: by('provider', (r) => r.provider),
    by_day: by('day', (r) => new Date(r.created_at).toISOString().slice(0, 10)),
    by_user: keyId === null ? byKeyUser() : by('user', (r) => r.end_user),
  }
}

const GROUPS = ['key', 'model', 'provider', 'day', 'user'] as const
/** Groups compared as sets: the order of NULL among values is the engine's. */
const sorted = (report: Record<string, any>) =>
  Object.fromEntries(Object.entries(report).map(([k, v]) => [k, Array.isArray(v) ? [...v].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))) : v]))

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`${engine}: usage reports from the per-hour totals`, () => {
    let databaseURL: string | undefined
    let drop = async () => {}
    let dataDir: string
    let store: Store
    const rows = ledgerRows(3_000)

    beforeAll(async () => {
      if (engine === 'postgres') {
        const database = await createTestDatabase()
        databaseURL = database.url
        drop = () => database.drop()
      }
      dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-usage-rollup-'))
      store = await Store.open({ dataDir, databaseURL })
    })
    afterAll(async () => {
      await store.close()
      await drop()
      rmSync(dataDir, { recursive: true, force: true })
    })

    test('batches of every size, each partly written first and retried whole (a lost reply): the totals equal the ledger for every grouping, range and key', async () => {
      for (let at = 0, size = 1; at < rows.length; at += size, size = (size * 3) % 401) {
        const batch = rows.slice(at, at + size)
        const part = batch.filter((_, i) => i % 3 === 1) // then the whole batch mixes rows already written with new ones
        if (part.length > 0) await store.insertSpend(part)
        await store.insertSpend(batch)
        await store.insertSpend(batch) // already in the ledger: adds nothing
      }
      await store.insertSpend(rows.slice(1_000, 2_500)) // a retry straddling batches
      const [{ n }] = await store.sql`SELECT COUNT(*) AS n FROM spend_ledger`
      expect(Number(n)).toBe(rows.length)

      const ranges: Record<string, string>[] = [
        {}, // the last 30 days: everything
        { from: String((START + 5 * HOUR + 1_000) / 1000), to: String((START + 17 * HOUR - 5_000) / 1000) }, // widened to whole hours
        { from: new Date(START + 29 * HOUR).toISOString() },
      ]
      for (const range of ranges) {
        const params = new URLSearchParams({ to: String(Math.ceil((START + 31 * HOUR) / 1000)), ...range })
        const { from, to } = usageRange(params)
        expect(from % HOUR).toBe(0)
        expect(to % HOUR).toBe(0)
        for (const keyId of [null, 'key-1']) {
          const report = await usageReport(store, { from, to }, keyId, [...GROUPS])
          expect(sorted(report)).toEqual(sorted({ object: 'usage', from: new Date(from).toISOString(), to: new Date(to).toISOString(), ...expectedReport(rows, from, to, keyId) }))
        }
      }
    })

    test('a ledger written before the totals existed is totalled by the migrations, its pictures too', async () => {
      const { sql } = store
      await sql`DROP TABLE spend_hours`
      await sql`DROP TABLE spend_user_hours`
      await sql`DELETE FROM schema_migrations WHERE version IN (13, 15)`
      await store.close()
      store = await Store.open({ dataDir, databaseURL })
      const { from, to } = usageRange(new URLSearchParams({ to: String((START + 31 * HOUR) / 1000) }))
      const report = await usageReport(store, { from, to }, null, [...GROUPS])
      expect(sorted(report)).toEqual(sorted({ object: 'usage', from: new Date(from).toISOString(), to: new Date(to).toISOString(), ...expectedReport(rows, from, to, null) }))
    })
  })
}
