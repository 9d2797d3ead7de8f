import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { SQL } from 'bun'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { SecretBox } from '../../src/store/crypto.ts'
import { rotateSecrets } from '../../src/store/secrets.ts'
import { Store } from '../../src/store/store.ts'
import { startGateway } from '../helpers/gateway.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { createTestDatabase } from '../helpers/postgres.ts'
import { ROOT, startProcess, stopProcess } from '../helpers/process.ts'

/**
 * SE6, key rotation with a keyring, on real processes: secrets sealed with an unnamed key (CONDUIT_ENCRYPTION_KEY,
 * as every deployment before the keyring) and with `k1`; add `k2`, rotate (cut short with --limit, then killed
 * while blocked mid-row, then run again), remove `k1`, restart: every secret on `k2`, every secret opens.
 */
const M1 = randomBytes(32).toString('base64')
const M2 = randomBytes(32).toString('base64')
const RING_K1 = `k1:${M1}`
const RING_BOTH = `k2:${M2},k1:${M1}`
const RING_K2 = `k2:${M2}`
const MASTER_KEY = 'rotation-test-master-key-0123456789'

const credential = () => `sk-rot-${randomBytes(24).toString('hex')}`
/** Providers by group (sealed with the unnamed key, with k1, with k2); every fifth has two keys (sealed as a JSON array). */
const group = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, i) => ({
    name: `${prefix}-${String(i).padStart(3, '0')}`,
    apiKey: i % 5 === 4 ? [credential(), credential()] : credential(),
  }))
const GROUPS = { legacy: group('legacy', 60), k1: group('k1', 60), k2: group('k2', 10) }
const PROVIDERS = Object.values(GROUPS).flat()
/** What each stored secret must decrypt to. */
const expected = new Map<string, string>([
  ['secrets_check', 'conduit'],
  ...PROVIDERS.map(({ name, apiKey }) => [name, Array.isArray(apiKey) ? JSON.stringify(apiKey) : apiKey] as [string, string]),
])

async function admin(origin: string, method: string, route: string, body?: unknown) {
  const res = await fetch(`${origin}/admin/v1${route}`, {
    method,
    headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const json: any = await res.json()
  if (!res.ok) throw new Error(`${method} ${route} → ${res.status} ${JSON.stringify(json)}`)
  return json
}

/** Runs a command to its end (killed after 30 s so a start that wrongly succeeds cannot hang the suite). */
async function run(command: string[], env: Record<string, string>) {
  const proc = Bun.spawn(command, { cwd: ROOT, env, stdout: 'pipe', stderr: 'pipe' })
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000)
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  clearTimeout(timer)
  return { stdout, stderr, code }
}

for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`${engine}: add k2, rotate, remove k1, restart`, () => {
    let dataDir: string
    let database: Awaited<ReturnType<typeof createTestDatabase>> | null = null
    let fake: FakeOpenAI
    let virtualKey: string
    const modelFor = new Map<string, { name: string; apiKey: string | string[] }>()

    const env = (keys: Record<string, string>): Record<string, string> => ({
      PATH: process.env.PATH!,
      HOME: process.env.HOME ?? '/root',
      CONDUIT_DATA_DIR: dataDir,
      CONDUIT_MASTER_KEY: MASTER_KEY,
      CONDUIT_WORKERS: '1',
      ...(database ? { DATABASE_URL: database.url } : {}),
      ...keys,
    })
    const rotate = (ring: string, ...args: string[]) => run(['bun', 'src/main.ts', 'rotate-secrets', ...args], env({ CONDUIT_ENCRYPTION_KEYS: ring }))

    /** Every sealed value in the store, read by this test process with the real Store. */
    async function stored(): Promise<{ id: string; name: string; sealed: string; aad: string }[]> {
      const store = await Store.open({ dataDir, databaseURL: database?.url })
      try {
        const providers = await store.sql`SELECT id, name, api_key_secret FROM providers ORDER BY id`
        const check = await store.getSetting('secrets_check')
        return [
          { id: 'secrets_check', name: 'secrets_check', sealed: check!, aad: 'secrets_check' },
          ...providers.map((p: any) => ({ id: p.id, name: p.name, sealed: p.api_key_secret, aad: `provider:${p.id}` })),
        ]
      } finally {
        await store.close()
      }
    }
    const kidCounts = (rows: { sealed: string }[]) => {
      const counts: Record<string, number> = {}
      for (const row of rows) {
        const kid = SecretBox.kidOf(row.sealed) ?? 'unnamed'
        counts[kid] = (counts[kid] ?? 0) + 1
      }
      return counts
    }
    /** How many stored values open with `ring` and decrypt to exactly what was stored. */
    const opening = (rows: { name: string; sealed: string; aad: string }[], ring: string) => {
      const box = SecretBox.fromKeyring(ring)
      return rows.filter((row) => {
        try {
          return box.decrypt(row.sealed, row.aad) === expected.get(row.name)
        } catch {
          return false
        }
      }).length
    }

    const createProvider = (origin: string, name: string, apiKey: string | string[]) =>
      admin(origin, 'POST', '/providers', { name, type: 'openai', base_url: fake.url, api_key: apiKey })

    async function createProviders(origin: string, made: { name: string; apiKey: string | string[] }[]) {
      for (let i = 0; i < made.length; i += 10) {
        const batch = made.slice(i, i + 10)
        await Promise.all(batch.map(({ name, apiKey }) => createProvider(origin, name, apiKey)))
      }
      // A model on the group's first provider, to prove a restarted gateway calls the upstream with its key.
      const model = `model-${made[0]!.name}`
      await admin(origin, 'POST', '/models', { name: model, targets: [{ provider: made[0]!.name, model: 'gpt-4o' }] })
      modelFor.set(model, made[0]!)
    }

    /** A chat through each model reaches the fake with exactly the key of the model's provider. */
    async function chatThroughEveryModel(origin: string) {
      for (const [model, provider] of modelFor) {
        const res = await fetch(`${origin}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${virtualKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
        })
        expect(res.status).toBe(200)
        expect([provider.apiKey].flat().map((key) => `Bearer ${key}`)).toContain(fake.requests.at(-1)!.headers.authorization!)
      }
    }

    beforeAll(async () => {
      dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-rotation-'))
      if (engine === 'postgres') database = await createTestDatabase()
      fake = await startFakeOpenAI({ apiKey: PROVIDERS.flatMap((p) => p.apiKey) })
    })
    afterAll(async () => {
      await fake.stop()
      await database?.drop()
      rmSync(dataDir, { recursive: true, force: true })
    })

    test('secrets sealed before the keyring (unnamed key) and with k1, then k2 added: older rows are reported at start', async () => {
      // A deployment from before the keyring: one unnamed key, `v1` rows.
      const legacy = await startProcess(env({ CONDUIT_ENCRYPTION_KEY: M1 }))
      virtualKey = (await admin(legacy.origin, 'POST', '/keys', { name: 'rotation' })).key
      await createProviders(legacy.origin, GROUPS.legacy)
      expect(await stopProcess(legacy.proc)).toBe(0)

      // The same key, named k1 in a ring.
      const named = await startProcess(env({ CONDUIT_ENCRYPTION_KEYS: RING_K1 }))
      await createProviders(named.origin, GROUPS.k1)
      expect(await stopProcess(named.proc)).toBe(0)

      // k2 added as the primary: new secrets are sealed with it; the start reports what is still on older keys.
      const both = await startProcess(env({ CONDUIT_ENCRYPTION_KEYS: RING_BOTH }))
      await createProviders(both.origin, GROUPS.k2)
      await chatThroughEveryModel(both.origin)
      expect(await stopProcess(both.proc)).toBe(0)
      expect(both.output + (await readAll(both.proc.stdout as ReadableStream))).toContain('stored secrets are sealed with older keys')

      const rows = await stored()
      expect(kidCounts(rows)).toEqual({ unnamed: 61, k1: 60, k2: 10 })
      expect(opening(rows, RING_BOTH)).toBe(rows.length)
    }, 90_000)

    test('removing k1 before rotating refuses to start, naming the key', async () => {
      const early = await run(['bun', 'src/main.ts'], { ...env({ CONDUIT_ENCRYPTION_KEYS: RING_K2 }), PORT: '0', HOST: '127.0.0.1' })
      expect(early.code).toBe(1)
      expect(early.stderr).toContain("sealed with key 'k1', which CONDUIT_ENCRYPTION_KEYS does not have")
      expect(early.stderr).not.toContain(M1)
      expect(early.stderr).not.toContain(M2)
    }, 40_000)

    test('a rotation cut short (--limit), then killed while blocked mid-row, leaves every row on k1 or k2 and every row opening', async () => {
      const partial = await rotate(RING_BOTH, '--limit', '30')
      expect(partial.code).toBe(2)
      expect(partial.stdout.match(/^resealed /gm)?.length).toBe(30)
      expect(partial.stdout).toContain('still on other keys: run rotate-secrets again')

      // Hold the store's writes where the next run will need them; it blocks inside a row's UPDATE and is killed there.
      // PostgreSQL locks one row 25 rows in, so this run reseals 25 itself; SQLite locks the whole file (0 rows).
      const staleIds = (await stored()).filter((r) => SecretBox.kidOf(r.sealed) !== 'k2').map((r) => r.id)
      const lockedAt = engine === 'postgres' ? 25 : 0
      const release = engine === 'postgres' ? await lockRow(database!.url, staleIds[lockedAt]!) : lockSqlite(path.join(dataDir, 'conduit.sqlite'))
      try {
        const command = ['bun', 'src/main.ts', 'rotate-secrets']
        const proc = Bun.spawn(command, { cwd: ROOT, env: env({ CONDUIT_ENCRYPTION_KEYS: RING_BOTH }), stdout: 'pipe' })
        let output = await readUntil(proc.stdout, (text) => text.includes('Re-sealing ') && (text.match(/^resealed /gm)?.length ?? 0) >= lockedAt)
        // Blocked: nothing more for a while (the store's busy timeout is 5 s; the kill comes well before it).
        await Bun.sleep(500)
        proc.kill('SIGKILL')
        output += await readAll(proc.stdout)
        expect(await proc.exited).not.toBe(0)
        expect(output).toMatch(/Re-sealing 91 of 131 stored secrets with key 'k2'/)
        expect(output.match(/^resealed /gm)?.length ?? 0).toBe(lockedAt)
      } finally {
        await release()
      }

      const rows = await stored()
      const counts = kidCounts(rows)
      expect(Object.keys(counts).every((kid) => ['unnamed', 'k1', 'k2'].includes(kid))).toBe(true)
      // Mid-way: the 10 sealed with k2 at creation + 30 (limit) + the killed run's rows (an orphaned PostgreSQL
      // backend may still apply the UPDATE it was blocked in once the lock goes: one more at most).
      expect(counts.k2).toBeGreaterThanOrEqual(10 + 30 + lockedAt)
      expect(counts.k2).toBeLessThanOrEqual(10 + 30 + lockedAt + 1)
      expect(opening(rows, RING_BOTH)).toBe(rows.length)
    }, 60_000)

    test('run again: every secret on k2; then k1 removed, a restart works and every provider opens and is used', async () => {
      const rerun = await rotate(RING_BOTH)
      expect(rerun.code).toBe(0)
      expect(rerun.stdout).toContain("131 of 131 stored secrets are on key 'k2'")
      expect(rerun.stdout).not.toContain(M1)

      const rows = await stored()
      expect(kidCounts(rows)).toEqual({ k2: 131 })
      expect(opening(rows, RING_K2)).toBe(131)

      // Idempotent: a further run changes nothing.
      const again = await rotate(RING_K2)
      expect(again.code).toBe(0)
      expect(again.stdout).toContain('0 resealed')
      expect((await stored()).map((r) => r.sealed)).toEqual(rows.map((r) => r.sealed))

      const restarted = await startProcess(env({ CONDUIT_ENCRYPTION_KEYS: RING_K2 }))
      const providers = (await admin(restarted.origin, 'GET', '/providers')).data
      expect(providers.length).toBe(130)
      await chatThroughEveryModel(restarted.origin)
      expect(await stopProcess(restarted.proc)).toBe(0)
      expect(restarted.output + (await readAll(restarted.proc.stdout as ReadableStream))).not.toContain('older keys')
    }, 60_000)
  })
}

test('the command refuses without CONDUIT_ENCRYPTION_KEYS, and on a folder without a store (creating none)', async () => {
  const empty = mkdtempSync(path.join(tmpdir(), 'conduit-rotation-'))
  try {
    const env = { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', CONDUIT_DATA_DIR: empty }
    const noRing = await run(['bun', 'src/main.ts', 'rotate-secrets'], { ...env, CONDUIT_ENCRYPTION_KEY: M1 })
    expect(noRing.code).toBe(1)
    expect(noRing.stderr).toContain('CONDUIT_ENCRYPTION_KEYS is not set')
    const noStore = await run(['bun', 'src/main.ts', 'rotate-secrets'], { ...env, CONDUIT_ENCRYPTION_KEYS: RING_K2 })
    expect(noStore.code).toBe(1)
    expect(noStore.stderr).toContain(`No store at ${path.join(empty, 'conduit.sqlite')}`)
    expect(noStore.stderr + noStore.stdout).not.toContain(M2)
    expect(readdirSync(empty)).toEqual([])
  } finally {
    rmSync(empty, { recursive: true, force: true })
  }
}, 30_000)

/** Reads a stream until `done(text so far)`; gives up after 20 s. */
async function readUntil(stream: ReadableStream<Uint8Array>, done: (text: string) => boolean): Promise<string> {
  const reader = stream.getReader()
  const decoder = new TextDecoder()
  let text = ''
  const deadline = Date.now() + 20_000
  while (!done(text)) {
    if (Date.now() > deadline) throw new Error(`gave up waiting; output so far:\n${text}`)
    const { value, done: ended } = await reader.read()
    if (ended) throw new Error(`the command ended early:\n${text}`)
    text += decoder.decode(value, { stream: true })
  }
  reader.releaseLock()
  return text
}

/** The rest of a stream already read from (a `Response` refuses a disturbed stream). */
async function readAll(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.getReader()
  const decoder = new TextDecoder()
  let text = ''
  for (let read = await reader.read(); !read.done; read = await reader.read()) text += decoder.decode(read.value, { stream: true })
  return text
}

/** Holds the SQLite write lock (as any other writer would) until released. */
function lockSqlite(file: string) {
  const db = new Database(file)
  db.run('BEGIN IMMEDIATE')
  return async () => {
    db.run('ROLLBACK')
    db.close()
  }
}

/** Holds one PostgreSQL row locked in an open transaction until released. */
async function lockRow(url: string, id: string) {
  const sql = new SQL(url)
  let release!: () => void
  const released = new Promise<void>((resolve) => (release = resolve))
  let locked!: () => void
  const isLocked = new Promise<void>((resolve) => (locked = resolve))
  const transaction = sql.begin(async (tx) => {
    await tx`SELECT id FROM providers WHERE id = ${id} FOR UPDATE`
    locked()
    await released
  })
  await isLocked
  return async () => {
    release()
    await transaction
    await sql.close()
  }
}

test("a provider's sealed base URL is re-sealed by the rotation like its API key, and still opens to the URL", async () => {
  const gw = await startGateway({ encryptionKeys: RING_K1 })
  const url = 'https://bob:url-secret-1234@models.example.com/v1'
  try {
    const { id } = await gw.admin('POST', '/providers', { name: 'behind-basic-auth', type: 'openai', base_url: url, api_key: 'sk-rot-url-0000' })
    const sealed = async () => ((await gw.gateway.store.sql`SELECT base_url_secret FROM providers WHERE id = ${id}`)[0] as any).base_url_secret as string
    expect(SecretBox.kidOf(await sealed())).toBe('k1')
    const report = await rotateSecrets(gw.gateway.store, SecretBox.fromKeyring(RING_BOTH))
    expect(report).toMatchObject({ remaining: 0 })
    expect(SecretBox.kidOf(await sealed())).toBe('k2')
    expect(SecretBox.fromKeyring(RING_K2).decrypt(await sealed(), `provider-url:${id}`)).toBe(url)
  } finally {
    await gw.close()
  }
})
