import { afterAll, beforeAll, expect, test } from 'bun:test'
import { SQL } from 'bun'
import { MIGRATIONS } from '../../src/store/migrations.ts'
import { Store } from '../../src/store/store.ts'
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
