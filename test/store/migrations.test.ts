import { afterAll, beforeAll, expect, test } from 'bun:test'
import { SQL } from 'bun'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MIGRATIONS } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
import { startGateway } from '../helpers/gateway.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

/** Several instances starting together on one new PostgreSQL database, as a fleet's first start or a rollout does. */
let database: Awaited<ReturnType<typeof createTestDatabase>>
beforeAll(async () => {
  database = await createTestDatabase()
})
afterAll(() => database.drop())

test('instances opening a new PostgreSQL database at once: every one opens, each migration applied once', async () => {
  const opened = await Promise.allSettled(Array.from({ length: 4 }, () => Store.open({ dataDir: '', databaseURL: database.url })))
  const failures = opened.flatMap((o) => (o.status === 'rejected' ? [String(o.reason)] : []))
  expect(failures).toEqual([])
  for (const o of opened) if (o.status === 'fulfilled') await o.value.close()
  const sql = new SQL(database.url)
  const applied = (await sql`SELECT version FROM schema_migrations ORDER BY version`).map((r: any) => Number(r.version))
  await sql.close()
  expect(applied).toEqual(MIGRATIONS.map((m) => m.version))
})

test('instances starting at once on one database with one config seed: each entity created once, every instance up', async () => {
  const fleet = await createTestDatabase()
  try {
    // Migrated first: the instances would otherwise wait on the migration lock, and seed one after another.
    await (await Store.open({ dataDir: '', databaseURL: fleet.url })).close()
    for (let round = 0; round < 8; round++) {
      // New names each round: every instance finds none, and all of them create at once.
      const seed = {
        providers: [{ name: `oa-${round}`, type: 'openai' as const, base_url: 'https://api.openai.com/v1', api_key: 'sk-seed-0000' }],
        models: [{ name: `gpt-${round}`, targets: [{ provider: `oa-${round}`, model: 'gpt-4o' }] }],
        keys: [{ name: `ci-${round}`, rpm: 10 }],
      }
      const started = await Promise.allSettled(Array.from({ length: 3 }, () => startGateway({ databaseURL: fleet.url, encryptionKey: 'fleet-encryption-key', seed })))
      const failures = started.flatMap((s) => (s.status === 'rejected' ? [String(s.reason)] : []))
      const gateways = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []))
      // The key is created once, and printed by the instance that made it.
      const generated = gateways.flatMap((gw) => gw.gateway.generatedKeys)
      const keys = (await gateways[0]?.admin('GET', '/keys'))?.data ?? []
      for (const gw of gateways) await gw.close()
      expect(failures).toEqual([])
      expect(generated.length).toBe(1)
      expect(keys.filter((k: any) => k.name === `ci-${round}`)).toHaveLength(1)
    }
  } finally {
    await fleet.drop()
  }
}, 60_000)

test('an older release refuses a store a newer one migrated, rather than misread it', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-newer-'))
  try {
    const store = await Store.open({ dataDir })
    const newest = MIGRATIONS.at(-1)!.version
    await store.sql`INSERT INTO schema_migrations (version, applied_at) VALUES (${newest + 1}, ${Date.now()})`
    await store.close()
    await expect(Store.open({ dataDir })).rejects.toThrow(`migrated by a newer release of Conduit (schema ${newest + 1}; this one knows up to ${newest})`)
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('a database that cannot be reached is named in the message (without its password)', async () => {
  const url = 'postgres://conduit:hunter2-password@127.0.0.1:1/nowhere'
  const error = await Store.open({ dataDir: '', databaseURL: url }).then(() => null, (e: Error) => e.message)
  expect(error).toStartWith('Cannot reach PostgreSQL at 127.0.0.1:1/nowhere: ')
  expect(error).not.toContain('hunter2')
})
