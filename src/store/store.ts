import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import path from 'node:path'
import { SQL } from 'bun'
import { GatewayError, inContext } from '../plugin-sdk/errors.ts'
import type { ModelTarget, StoreChange, StoreView, StoredKey, VirtualModel } from '../plugin-sdk/types.ts'
import type { SpendRow } from './ledger.ts'
import type { RequestRecordRow } from './request-records.ts'
import { RowWriter } from './row-writer.ts'
import { BUCKET_COLUMNS, TABLE_KEYS, onConflict, type StoredItemRow, type StoredResponseRow } from './tables.ts'
import type { BucketRow } from '../core/timeseries.ts'
import { MIGRATIONS } from './migrations.ts'
import { ADD_INSERTED, BY_MODEL, BY_USER } from './spend-rollup.ts'

/*
 * One store module for both engines: Bun.SQL speaks SQLite (embedded default) and PostgreSQL
 * (DATABASE_URL). Queries stay in the portable subset: TEXT, BIGINT epoch-milliseconds, INTEGER booleans,
 * JSON as TEXT.
 */

export interface ProviderRow {
  id: string
  name: string
  type: string
  /** With its credential masked when it has one: the whole URL is then `baseURLSecret`. */
  baseURL: string | null
  /** The base URL with its credential, sealed by SecretBox (opened by `openProvider`); null when it has none. */
  baseURLSecret: string | null
  /** Sealed by SecretBox; never leaves the process in plaintext except to the upstream. */
  apiKeySecret: string | null
  apiKeyLast4: string | null
  options: Record<string, unknown>
  createdAt: number
  updatedAt: number
}

export interface KeyRow extends StoredKey {
  keyPrefix: string
  keyLast4: string
  createdAt: number
  updatedAt: number
}

export interface UsageTotals {
  /** The group's value; null for requests without one (no `user`, say). */
  bucket: string | null
  /** Grouped by user over every key: the key the user belongs to (two keys' "alice" are two people). */
  key?: string | null
  requests: number
  prompt_tokens: number
  completion_tokens: number
  cost_micros: number
  /** Requests served by a target without a price (recorded at $0). */
  unpriced: number
  audio_ms: number
  characters: number
  images: number
}

/**
 * Rows one purge statement deletes: about 4 ms of SQLite on this box. Between statements the event loop has its turn:
 * SQLite runs on the event loop, and one DELETE of an hour of request records (100,000 rows took 0.4 s here; 3.6
 * million at 1,000 req/s) froze every request and stream of the process for as long.
 */
const PURGE_CHUNK = 1_000

/** A write refused by a UNIQUE constraint (a name taken by a concurrent write), on SQLite or PostgreSQL. */
export const isUniqueViolation = (error: unknown) => {
  const e = error as { code?: unknown; errno?: unknown } | null
  return e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || String(e?.errno) === '23505'
}

/**
 * The error a client gets when the database could not be reached (refused, closed, timed out, locked past the
 * busy timeout): a 503 to retry, not a 500. Null for any other error, a socket error of another client included.
 */
export function storeUnavailable(error: unknown): GatewayError | null {
  const code = (error as { code?: unknown } | null)?.code
  if (typeof code !== 'string' || !/^(ERR_POSTGRES_(CONNECTION|IDLE|LIFETIME)|SQLITE_(BUSY|LOCKED|CANTOPEN|IOERR|FULL))/.test(code)) return null
  return new GatewayError(503, 'The gateway cannot reach its database right now. Try again shortly.', { code: 'store_unavailable', headers: { 'retry-after': '1' } })
}

/**
 * The database holds stored conversations, request bodies and sealed secrets: readable by its owner only. Created
 * so (SQLite gives its -wal and -shm files the database file's mode), and made so when an older start left it wider.
 */
function keepPrivate(file: string) {
  try {
    closeSync(openSync(file, 'a', 0o600))
    for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600)
  } catch {
    // A file system without modes (or a file owned by another user): SQLite opens it or says why.
  }
}

/** The first statement on a new connection: its failure says which database could not be opened, and why. */
async function opened(first: Promise<unknown>, what: string) {
  try {
    await first
  } catch (error) {
    throw inContext(what, error)
  }
}

/** host:port/database of a URL, without its credentials (the message is printed). */
function addressOf(url: string): string {
  const parsed = URL.parse(url)
  return parsed ? `${parsed.host}${parsed.pathname}` : 'DATABASE_URL'
}

/** PostgreSQL advisory lock taken while migrating (any number, the same in every release). */
const MIGRATION_LOCK = 0x636f6e64 // "cond"

async function pendingMigrations(sql: SQL): Promise<typeof MIGRATIONS> {
  await sql`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`
  const done = new Set<number>((await sql`SELECT version FROM schema_migrations`).map((r: any) => Number(r.version)))
  // An older release on a newer store would misread what it does not know (a sealed column, a masked URL).
  const known = MIGRATIONS.at(-1)!.version
  const newest = Math.max(0, ...done)
  if (newest > known) {
    throw new Error(`The store was migrated by a newer release of Conduit (schema ${newest}; this one knows up to ${known}): run that release or a later one.`)
  }
  return MIGRATIONS.filter((m) => !done.has(m.version))
}

async function applyMigration(tx: SQL, migration: (typeof MIGRATIONS)[number]) {
  for (const statement of migration.statements) await tx.unsafe(statement)
  await tx`INSERT INTO schema_migrations (version, applied_at) VALUES (${migration.version}, ${Date.now()})`
}

/** An instance rewrites its current metric buckets whole at each flush: the newer row takes the stored one's place. */
const REPLACE_BUCKETS = onConflict('metric_buckets', BUCKET_COLUMNS, 'replace')

/** Records one page of the request log examines at most for the filters no index serves (see listRequestRecords). */
export const RECORD_SCAN_ROWS = 10_000

/** Rows of a usage report grouped by end user: the dearest ones (a client may send any number of `user` values). */
export const USAGE_USER_ROWS = 1_000

export interface ModelRow extends VirtualModel {
  updatedAt: number
}

const json = (value: unknown) => (value === undefined || value === null ? null : JSON.stringify(value))
const parse = <T>(value: unknown, fallback: T): T => (typeof value === 'string' ? (JSON.parse(value) as T) : fallback)
const num = (value: unknown) => (value === null || value === undefined ? null : Number(value))

const toProvider = (r: any): ProviderRow => ({
  id: r.id,
  name: r.name,
  type: r.type,
  baseURL: r.base_url,
  baseURLSecret: r.base_url_secret ?? null,
  apiKeySecret: r.api_key_secret,
  apiKeyLast4: r.api_key_last4,
  options: parse(r.options, {}),
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
})
const toModel = (r: any): ModelRow => ({
  id: r.id,
  name: r.name,
  targets: parse<ModelTarget[]>(r.targets, []),
  limits: parse(r.limits, null),
  routing: parse(r.routing, null),
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
})
const toKey = (r: any): KeyRow => ({
  id: r.id,
  name: r.name,
  enabled: Number(r.enabled) === 1,
  expiresAt: num(r.expires_at),
  allowedModels: parse<string[] | null>(r.allowed_models, null),
  allowedEndpoints: parse(r.allowed_endpoints, null),
  limits: parse(r.limits, null),
  metadata: parse(r.metadata, {}),
  keyPrefix: r.key_prefix,
  keyLast4: r.key_last4,
  createdAt: Number(r.created_at),
  updatedAt: Number(r.updated_at),
})

/** Carries store changes between gateway processes (worker IPC today; Redis pub/sub when scaled out). */
export interface ChangeBus {
  /** Delivers a local change to the other processes; resolves once they have applied it. */
  publish(change: StoreChange): Promise<void>
  /** Changes made by other processes. */
  subscribe(listener: (change: StoreChange) => void): void
}

export class Store implements StoreView {
  private readonly listeners = new Set<(change: StoreChange) => void>()
  private readonly buses: ChangeBus[] = []
  /**
   * SQLite only: the rows every request writes, inserted on a thread of their own (see RowWriter). `this.sql` keeps
   * Bun.SQL's `begin` to the migrations, which run before any request: its transactions hold the write lock across
   * an await.
   */
  private rowWriter: RowWriter | null = null

  /**
   * Rows a batch of the ledger or the request records carries. SQLite: 2,000 a transaction on the row writer's thread,
   * which writes each page a batch touches to the WAL once: against 500, that thread's CPU a request (a ledger row and
   * a record; `bench/profile.sh`, three interleaved runs each) went from 20.0–22.9 to 16.6–18.1 µs with the requests
   * over 40 keys, from 9.3–9.9 to 7.9–8.8 with one. PostgreSQL: 500 a statement, well under its 65,535 parameters
   * (a column of a row is one: 3,120 records of 21 columns).
   */
  get rowsPerBatch(): number {
    return this.engine === 'sqlite' ? 2_000 : 500
  }

  private constructor(
    readonly sql: SQL,
    readonly engine: 'sqlite' | 'postgres',
  ) {}

  /** `DATABASE_URL` (postgres://…) when given, otherwise `<dataDir>/conduit.sqlite`. */
  static async open(options: { dataDir: string; databaseURL?: string }): Promise<Store> {
    let store: Store
    if (options.databaseURL && /^postgres(ql)?:/i.test(options.databaseURL)) {
      store = new Store(new SQL(options.databaseURL), 'postgres')
      await opened(store.sql`SELECT 1`, `Cannot reach PostgreSQL at ${addressOf(options.databaseURL)}`)
    } else {
      mkdirSync(options.dataDir, { recursive: true, mode: 0o700 })
      const file = path.resolve(options.dataDir, 'conduit.sqlite')
      keepPrivate(file)
      store = new Store(new SQL({ adapter: 'sqlite', filename: file }), 'sqlite')
      // NORMAL (here and on the row writer's connection): a commit does not wait for an fsync (WAL: a power cut may
      // roll back the last commits, never corrupt the file; a crashed process loses only what it still queued). This
      // connection runs its statements on the event loop: with FULL each image URL and realtime session it writes
      // stalled the whole process for an fsync (0.3–3 ms each).
      // The busy timeout first: another process opening the file at the same moment (a cluster's workers start
      // together) can hold it briefly, and a statement before the timeout is set fails at once ("database is locked").
      await opened(store.sql`PRAGMA busy_timeout = 5000`, `Cannot open the SQLite database ${file}`)
      await store.sql`PRAGMA journal_mode = WAL`
      await store.sql`PRAGMA synchronous = NORMAL`
      // The row writer's thread checkpoints the WAL (row-writer-thread.ts), off the event loop. Left at SQLite's
      // default, this connection's next commit past 1,000 pages in the WAL (an admin change, an image URL) would copy
      // them all into the database file, and fsync it twice, on the event loop.
      await store.sql`PRAGMA wal_autocheckpoint = 0`
      store.rowWriter = new RowWriter(file)
    }
    await store.migrate()
    return store
  }

  private async migrate() {
    if (this.engine === 'sqlite') {
      // One machine: its cluster's leader migrates before the other workers open the store.
      for (const migration of await pendingMigrations(this.sql)) await this.sql.begin((tx) => applyMigration(tx, migration))
      return
    }
    // Instances starting together on a new database, or a release that adds a migration rolled out to several at once,
    // would each apply it, and all but one fail ("already exists"): one migrates under this lock while the others
    // wait, then find nothing left to do.
    await this.sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`
      for (const migration of await pendingMigrations(tx)) await applyMigration(tx, migration)
    })
  }

  onChange(listener: (change: StoreChange) => void) {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** Other processes' changes invalidate this process's caches exactly as local ones do. */
  connect(bus: ChangeBus) {
    this.buses.push(bus)
    bus.subscribe((change) => this.notify(change))
  }

  private notify(change: StoreChange) {
    for (const listener of this.listeners) listener(change)
  }

  /** Resolves once every process has seen the change, so an admin call returns only when it is in force. */
  private async changed(kind: StoreChange['kind'], id: string) {
    const change = { kind, id }
    this.notify(change)
    await Promise.all(this.buses.map((bus) => bus.publish(change)))
  }

  async close() {
    await this.rowWriter?.close()
    this.rowWriter = null
    await this.sql.close()
  }

  // Settings -------------------------------------------------------------------------------------------

  async getSetting(name: string): Promise<string | null> {
    const [row] = await this.sql`SELECT value FROM settings WHERE name = ${name}`
    return row ? row.value : null
  }

  async setSetting(name: string, value: string) {
    await this.sql`INSERT INTO settings (name, value) VALUES (${name}, ${value})
      ON CONFLICT (name) DO UPDATE SET value = excluded.value`
  }

  // Providers ------------------------------------------------------------------------------------------

  async listProviders(): Promise<ProviderRow[]> {
    return (await this.sql`SELECT * FROM providers ORDER BY created_at, id`).map(toProvider)
  }

  /** By id or by name. */
  async getProvider(ref: string): Promise<ProviderRow | null> {
    const [row] = await this.sql`SELECT * FROM providers WHERE id = ${ref} OR name = ${ref}`
    return row ? toProvider(row) : null
  }

  async insertProvider(p: Omit<ProviderRow, 'createdAt' | 'updatedAt'>): Promise<ProviderRow> {
    const now = Date.now()
    await this.sql`INSERT INTO providers (id, name, type, base_url, base_url_secret, api_key_secret, api_key_last4, options, created_at, updated_at)
      VALUES (${p.id}, ${p.name}, ${p.type}, ${p.baseURL}, ${p.baseURLSecret}, ${p.apiKeySecret}, ${p.apiKeyLast4}, ${json(p.options)}, ${now}, ${now})`
    await this.changed('provider', p.id)
    return { ...p, createdAt: now, updatedAt: now }
  }

  /**
   * The row written whole, if it is still as it was read (its `updated_at`, `p.updatedAt`); null when another change
   * came first. Each write moves `updated_at` forward, even within a millisecond, so no change goes unseen.
   */
  async updateProvider(p: ProviderRow): Promise<ProviderRow | null> {
    const now = Math.max(Date.now(), p.updatedAt + 1)
    const { count } = await this.sql`UPDATE providers SET name = ${p.name}, type = ${p.type}, base_url = ${p.baseURL}, base_url_secret = ${p.baseURLSecret}, api_key_secret = ${p.apiKeySecret},
      api_key_last4 = ${p.apiKeyLast4}, options = ${json(p.options)}, updated_at = ${now} WHERE id = ${p.id} AND updated_at = ${p.updatedAt}`
    if (count === 0) return null
    await this.changed('provider', p.id)
    return { ...p, updatedAt: now }
  }

  async deleteProvider(id: string) {
    await this.sql`DELETE FROM providers WHERE id = ${id}`
    await this.changed('provider', id)
  }

  // Models ---------------------------------------------------------------------------------------------

  async listModels(): Promise<ModelRow[]> {
    return (await this.sql`SELECT * FROM models ORDER BY created_at, id`).map(toModel)
  }

  async getModel(ref: string): Promise<ModelRow | null> {
    const [row] = await this.sql`SELECT * FROM models WHERE id = ${ref} OR name = ${ref}`
    return row ? toModel(row) : null
  }

  async insertModel(m: Omit<ModelRow, 'createdAt' | 'updatedAt'>): Promise<ModelRow> {
    const now = Date.now()
    await this.sql`INSERT INTO models (id, name, targets, limits, routing, created_at, updated_at)
      VALUES (${m.id}, ${m.name}, ${json(m.targets)}, ${json(m.limits)}, ${json(m.routing)}, ${now}, ${now})`
    await this.changed('model', m.id)
    return { ...m, createdAt: now, updatedAt: now }
  }

  /** As updateProvider: null when the row changed since it was read. */
  async updateModel(m: ModelRow): Promise<ModelRow | null> {
    const now = Math.max(Date.now(), m.updatedAt + 1)
    const { count } = await this.sql`UPDATE models SET name = ${m.name}, targets = ${json(m.targets)}, limits = ${json(m.limits)}, routing = ${json(m.routing)},
      updated_at = ${now} WHERE id = ${m.id} AND updated_at = ${m.updatedAt}`
    if (count === 0) return null
    await this.changed('model', m.id)
    return { ...m, updatedAt: now }
  }

  async deleteModel(id: string) {
    await this.sql`DELETE FROM models WHERE id = ${id}`
    await this.changed('model', id)
  }

  // Virtual keys ---------------------------------------------------------------------------------------

  async listKeys(): Promise<KeyRow[]> {
    return (await this.sql`SELECT * FROM virtual_keys ORDER BY created_at, id`).map(toKey)
  }

  /** The key whose id is `ref` and the one whose name is (two when a name looks like another key's id). */
  async findKeys(ref: string): Promise<KeyRow[]> {
    return (await this.sql`SELECT * FROM virtual_keys WHERE id = ${ref} OR name = ${ref} ORDER BY created_at, id`).map(toKey)
  }

  async findKeyByHash(hash: string): Promise<KeyRow | null> {
    const [row] = await this.sql`SELECT * FROM virtual_keys WHERE key_hash = ${hash}`
    return row ? toKey(row) : null
  }

  async insertKey(k: Omit<KeyRow, 'createdAt' | 'updatedAt'>, keyHash: string): Promise<KeyRow> {
    const now = Date.now()
    await this.sql`INSERT INTO virtual_keys (id, name, key_hash, key_prefix, key_last4, allowed_models, allowed_endpoints, limits, expires_at, enabled,
        metadata, created_at, updated_at)
      VALUES (${k.id}, ${k.name}, ${keyHash}, ${k.keyPrefix}, ${k.keyLast4}, ${json(k.allowedModels)}, ${json(k.allowedEndpoints)}, ${json(k.limits)},
        ${k.expiresAt}, ${k.enabled ? 1 : 0}, ${json(k.metadata)}, ${now}, ${now})`
    await this.changed('key', k.id)
    return { ...k, createdAt: now, updatedAt: now }
  }

  /** As updateProvider: null when the row changed since it was read. */
  async updateKey(k: KeyRow): Promise<KeyRow | null> {
    const now = Math.max(Date.now(), k.updatedAt + 1)
    const { count } = await this.sql`UPDATE virtual_keys SET name = ${k.name}, allowed_models = ${json(k.allowedModels)}, allowed_endpoints = ${json(k.allowedEndpoints)},
      limits = ${json(k.limits)}, expires_at = ${k.expiresAt},
      enabled = ${k.enabled ? 1 : 0}, metadata = ${json(k.metadata)}, updated_at = ${now} WHERE id = ${k.id} AND updated_at = ${k.updatedAt}`
    if (count === 0) return null
    await this.changed('key', k.id)
    return { ...k, updatedAt: now }
  }

  async deleteKey(id: string) {
    await this.sql`DELETE FROM virtual_keys WHERE id = ${id}`
    await this.changed('key', id)
  }

  // Spend ledger -------------------------------------------------------------------------------------------

  /**
   * With the per-hour totals (spend-rollup.ts) of the rows new to the ledger. PostgreSQL: one statement per batch;
   * SQLite: one transaction on the row writer's thread.
   */
  async insertSpend(rows: SpendRow[]) {
    if (this.rowWriter) return this.rowWriter.write('spend', rows)
    await this.sql`WITH inserted AS (INSERT INTO spend_ledger ${this.sql(rows)} ON CONFLICT (request_id) DO NOTHING RETURNING *) ${this.sql.unsafe(ADD_INSERTED)}`
  }

  /** What a key (or one of its end users) spent since `since`: where a budget's state is rebuilt from. */
  async spentMicros(keyId: string, since: number, user?: string): Promise<number> {
    const [row] =
      user === undefined
        ? await this.sql`SELECT SUM(cost_micros) AS spent FROM spend_ledger WHERE key_id = ${keyId} AND created_at >= ${since}`
        : await this.sql`SELECT SUM(cost_micros) AS spent FROM spend_ledger WHERE key_id = ${keyId} AND end_user = ${user} AND created_at >= ${since}`
    return Number(row?.spent ?? 0)
  }

  /**
   * Totals over the hours in [from, to) (epoch ms, whole hours: see spend-rollup.ts), optionally for one key,
   * grouped one way (end users: the dearest USAGE_USER_ROWS).
   */
  async usage(by: 'key' | 'model' | 'provider' | 'day' | 'user' | 'all', from: number, to: number, keyId: string | null): Promise<UsageTotals[]> {
    const group = { key: "NULLIF(key_id, '')", model: "NULLIF(model, '')", provider: "NULLIF(provider, '')", day: 'hour / 86400000', user: "NULLIF(end_user, '')", all: null }[by]
    // A user is a user of one key: over every key, users are grouped with their key.
    const perKeyUser = by === 'user' && keyId === null
    const groupBy = perKeyUser ? `NULLIF(key_id, ''), ${group}` : group
    const order = by === 'user' ? `ORDER BY SUM(cost_micros) DESC, SUM(requests) DESC, ${groupBy} LIMIT ${USAGE_USER_ROWS}` : `ORDER BY ${group}`
    const rows = await this.sql.unsafe(
      `SELECT ${group ?? "'all'"} AS bucket, ${perKeyUser ? "NULLIF(key_id, '')" : 'NULL'} AS key, SUM(requests) AS requests, SUM(prompt_tokens) AS prompt_tokens,
         SUM(completion_tokens) AS completion_tokens, SUM(cost_micros) AS cost_micros, SUM(unpriced) AS unpriced,
         SUM(audio_ms) AS audio_ms, SUM(characters) AS characters, SUM(images) AS images
       FROM ${(by === 'user' ? BY_USER : BY_MODEL).table}
       WHERE hour >= $1 AND hour < $2 AND (CAST($3 AS TEXT) IS NULL OR key_id = CAST($3 AS TEXT))
       ${group ? `GROUP BY ${groupBy} ${order}` : ''}`,
      [from, to, keyId],
    )
    return rows.map((r: any) => ({
      bucket: by === 'day' ? new Date(Number(r.bucket) * 86_400_000).toISOString().slice(0, 10) : r.bucket,
      ...(perKeyUser ? { key: r.key } : {}),
      requests: Number(r.requests ?? 0),
      prompt_tokens: Number(r.prompt_tokens ?? 0),
      completion_tokens: Number(r.completion_tokens ?? 0),
      cost_micros: Number(r.cost_micros ?? 0),
      unpriced: Number(r.unpriced ?? 0),
      audio_ms: Number(r.audio_ms ?? 0),
      characters: Number(r.characters ?? 0),
      images: Number(r.images ?? 0),
    }))
  }

  // Stored responses (migration 11) ----------------------------------------------------------------------------

  /**
   * Responses and their items, together. SQLite: one transaction through the row writer, since a commit is most of
   * what a save costs (the WAL frames of every page it touched). PostgreSQL: items first, so that a response is never
   * found without them (items left by a failed second insert go with the retention).
   */
  async insertStoredResponses(responses: StoredResponseRow[], items: StoredItemRow[]) {
    if (this.rowWriter) return this.rowWriter.write('stored', responses, items)
    if (items.length > 0) await this.sql`INSERT INTO stored_response_items ${this.sql(items)} ON CONFLICT (key_id, item_id) DO NOTHING`
    await this.sql`INSERT INTO stored_responses ${this.sql(responses)} ON CONFLICT (id) DO NOTHING`
  }

  // Images the gateway serves at /v1/images/files/{id} (migration 10) ---------------------------------------

  /** Kept in the store, not on one machine's disk, so that any instance behind the balancer serves the URL. */
  async insertImageFile(file: { id: string; contentType: string; data: string; createdAt: number; expiresAt: number }) {
    await this.sql`INSERT INTO image_files (id, content_type, data, created_at, expires_at)
      VALUES (${file.id}, ${file.contentType}, ${file.data}, ${file.createdAt}, ${file.expiresAt})`
  }

  /** The file (base64) unless it has expired. */
  async getImageFile(id: string, now: number): Promise<{ contentType: string; data: string; expiresAt: number } | null> {
    const [row] = await this.sql`SELECT content_type, data, expires_at FROM image_files WHERE id = ${id} AND expires_at > ${now}`
    return row ? { contentType: row.content_type, data: row.data, expiresAt: Number(row.expires_at) } : null
  }

  async deleteExpiredImageFiles(now: number): Promise<number> {
    return await this.purge('image_files', 'expires_at', now + 1) // expired at `now` too: below now + 1 ms
  }

  // Request records, metric buckets, Web UI sessions (migration 8) --------------------------------------------

  async insertRequestRecords(rows: RequestRecordRow[]) {
    if (this.rowWriter) return this.rowWriter.write('records', rows)
    await this.sql`INSERT INTO request_records ${this.sql(rows)} ON CONFLICT (request_id) DO NOTHING`
  }

  /**
   * Newest first, `limit` rows after the cursor (the last row of the previous page: its time and id). Filters
   * are exact; `status` is a code or a class (`2xx`, `4xx`, `5xx`) or `error` (400 and up). A filter the indexes do
   * not serve (provider, user, status; the model beside a key) is applied to at most RECORD_SCAN_ROWS records along
   * the time index, the key's or the model's: one few records match would otherwise read the whole table, on the
   * event loop with SQLite (0.4 s per million records here). `scannedTo` is then where the examination stopped, when
   * older records remain: the next page starts below it.
   */
  async listRequestRecords(filter: RequestRecordFilter, limit: number): Promise<{ rows: RequestRecordRow[]; scannedTo: RecordCursor | null }> {
    const seek: string[] = []
    const args: unknown[] = []
    const arg = (value: unknown) => {
      args.push(value)
      return `$${args.length}`
    }
    if (filter.keyId !== undefined) seek.push(`key_id = ${arg(filter.keyId)}`)
    else if (filter.model !== undefined) seek.push(`model = ${arg(filter.model)}`)
    if (filter.from !== undefined) seek.push(`created_at >= ${arg(filter.from)}`)
    if (filter.to !== undefined) seek.push(`created_at < ${arg(filter.to)}`)
    if (filter.before) {
      // The first term bounds the index walk; the second is the exact cursor.
      const at = arg(filter.before.createdAt)
      seek.push(`created_at <= ${at} AND (created_at < ${at} OR request_id < ${arg(filter.before.id)})`)
    }
    const order = 'ORDER BY created_at DESC, request_id DESC'
    const seekArgs = [...args]
    const rest: string[] = []
    if (filter.keyId !== undefined && filter.model !== undefined) rest.push(`model = ${arg(filter.model)}`)
    if (filter.provider !== undefined) rest.push(`provider = ${arg(filter.provider)}`)
    if (filter.user !== undefined) rest.push(`end_user = ${arg(filter.user)}`)
    if (filter.status !== undefined) rest.push(`status >= ${arg(filter.status[0])} AND status <= ${arg(filter.status[1])}`)
    let scannedTo: RecordCursor | null = null
    if (rest.length > 0) {
      // The time alone, so that the walk reads the index only; every record of that millisecond is in this page.
      const [edge] = await this.sql.unsafe(
        `SELECT created_at FROM request_records ${seek.length ? `WHERE ${seek.join(' AND ')}` : ''} ORDER BY created_at DESC LIMIT 1 OFFSET ${RECORD_SCAN_ROWS - 1}`,
        seekArgs,
      )
      if (edge) {
        scannedTo = { createdAt: Number(edge.created_at), id: '' }
        rest.push(`created_at >= ${arg(scannedTo.createdAt)}`)
      }
    }
    const where = [...seek, ...rest]
    const rows = await this.sql.unsafe(
      `SELECT request_id, created_at, key_id, endpoint, model, provider, upstream_model, status, error_code, stream, aborted, attempts,
         latency_ms, ttft_ms, prompt_tokens, completion_tokens, cost_micros, estimated, end_user, client_ip,
         ${filter.withBodies ? 'request_body' : 'NULL AS request_body'}
       FROM request_records ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ${order} LIMIT ${Math.max(1, Math.min(1000, Math.floor(limit)))}`,
      args,
    )
    return { rows: rows.map(toRecord), scannedTo }
  }

  /**
   * The key's newest request record (epoch ms), null when it has none: one seek of the key's index, where a GROUP BY
   * of every key reads the whole table (on the event loop with SQLite: 52 ms for 500,000 rows).
   */
  async lastUsedAt(keyId: string): Promise<number | null> {
    const [row] = await this.sql`SELECT MAX(created_at) AS last FROM request_records WHERE key_id = ${keyId}`
    return row?.last == null ? null : Number(row.last)
  }

  async getRequestRecord(id: string): Promise<RequestRecordRow | null> {
    const [row] = await this.sql`SELECT * FROM request_records WHERE request_id = ${id}`
    return row ? toRecord(row) : null
  }

  /** Deletes request records and metric buckets older than `before`, and Web UI sessions expired by `now`. */
  async purgeRequestData(before: number, now: number): Promise<number> {
    const records = await this.purge('request_records', 'created_at', before)
    // A few rows per key, model and instance a minute: one statement each.
    await this.sql`DELETE FROM metric_buckets WHERE minute < ${before}`
    await this.sql`DELETE FROM ui_sessions WHERE expires_at < ${now}`
    return records
  }

  /** Deletes `table`'s rows whose `column` is below `before`, in chunks (see PURGE_CHUNK); returns how many. */
  async purge(table: Exclude<keyof typeof TABLE_KEYS, 'spend_ledger'>, column: 'created_at' | 'expires_at', before: number): Promise<number> {
    const key = TABLE_KEYS[table]
    const statement = `DELETE FROM ${table} WHERE (${key}) IN (SELECT ${key} FROM ${table} WHERE ${column} < $1 LIMIT ${PURGE_CHUNK})`
    let deleted = 0
    for (;;) {
      const chunk = Number((await this.sql.unsafe(statement, [before])).count ?? 0)
      deleted += chunk
      if (chunk < PURGE_CHUNK) return deleted
      await new Promise((resolve) => setImmediate(resolve))
    }
  }

  /** Each instance rewrites its own rows whole; a row repeated in one batch (queued twice during an outage) is written once, the latest. */
  async upsertMetricBuckets(rows: BucketRow[]) {
    const latest = new Map<string, BucketRow>()
    for (const row of rows) latest.set(`${row.minute}\n${row.instance}\n${row.key_id}\n${row.model}`, row)
    // SQLite: on the row writer's thread too. On the event loop this upsert waited in SQLite's busy handler whenever a
    // writer (this process's or another worker's) held the file: 2–4 ms stalls of every request, every 5 s, under load.
    if (this.rowWriter) return this.rowWriter.write('buckets', [...latest.values()])
    await this.sql`INSERT INTO metric_buckets ${this.sql([...latest.values()])} ${this.sql.unsafe(REPLACE_BUCKETS)}`
  }

  /**
   * Every instance's buckets over [from, to) summed per `stepMs` (whole minutes), optionally for one key and/or one
   * model; a point's histograms are its buckets' joined by commas. Summed here, not row by row in JavaScript: a day
   * is a bucket per minute, instance, key and model (115,200 for 40 keys and models on 2 instances: 0.85 s of
   * SQLite's event loop, every 15 s while an Overview showed the last day).
   */
  async metricPoints(from: number, to: number, stepMs: number, keyId: string | null, model: string | null): Promise<MetricPoint[]> {
    const joined = (column: string) => (this.engine === 'postgres' ? `string_agg(${column}, ',')` : `group_concat(${column}, ',')`)
    const rows = await this.sql.unsafe(
      `SELECT (minute - $1) / $2 AS point, SUM(requests) AS requests, SUM(errors) AS errors, SUM(prompt_tokens) AS prompt_tokens,
         SUM(completion_tokens) AS completion_tokens, SUM(cost_micros) AS cost_micros,
         ${joined('latency_hist')} AS latency_hist, ${joined('ttft_hist')} AS ttft_hist
       FROM metric_buckets WHERE minute >= $1 AND minute < $3
         AND (CAST($4 AS TEXT) IS NULL OR key_id = CAST($4 AS TEXT)) AND (CAST($5 AS TEXT) IS NULL OR model = CAST($5 AS TEXT))
       GROUP BY 1`,
      [from, stepMs, to, keyId, model], // in order of first use: SQLite numbers $n parameters as they appear
    )
    return rows.map((r: any) => ({
      point: Number(r.point),
      requests: Number(r.requests),
      errors: Number(r.errors),
      prompt_tokens: Number(r.prompt_tokens),
      completion_tokens: Number(r.completion_tokens),
      cost_micros: Number(r.cost_micros),
      latency_hist: r.latency_hist ?? '',
      ttft_hist: r.ttft_hist ?? '',
    }))
  }

  async insertSession(session: SessionRow) {
    await this.sql`INSERT INTO ui_sessions ${this.sql(session)}`
  }

  async getSession(tokenHash: string): Promise<SessionRow | null> {
    const [row] = await this.sql`SELECT * FROM ui_sessions WHERE token_hash = ${tokenHash}`
    return row ? { ...row, created_at: Number(row.created_at), expires_at: Number(row.expires_at) } : null
  }

  async deleteSession(tokenHash: string) {
    await this.sql`DELETE FROM ui_sessions WHERE token_hash = ${tokenHash}`
  }

  // Realtime sessions ----------------------------------------------------------------------------------------

  /** Also forgets sessions that expired a day ago or more (connected or not, they are of no further use). */
  async insertRealtimeSession(row: RealtimeSessionRow) {
    await this.sql`DELETE FROM realtime_sessions WHERE expires_at < ${row.created_at - 86_400_000}`
    await this.sql`INSERT INTO realtime_sessions ${this.sql(row)}`
  }

  /**
   * Marks a session connected and returns it, only if it was not connected yet and has not expired: one secret opens
   * one session, even when two connections race for it (on any instance). Found by its secret's hash or by its id.
   */
  async claimRealtimeSession(by: { secretHash: string } | { id: string }, now: number): Promise<RealtimeSessionRow | null> {
    const rows =
      'secretHash' in by
        ? await this.sql`UPDATE realtime_sessions SET connected_at = ${now}
            WHERE secret_hash = ${by.secretHash} AND connected_at IS NULL AND expires_at > ${now} RETURNING *`
        : await this.sql`UPDATE realtime_sessions SET connected_at = ${now}
            WHERE id = ${by.id} AND connected_at IS NULL AND expires_at > ${now} RETURNING *`
    const row = rows[0]
    return row ? { ...row, created_at: Number(row.created_at), expires_at: Number(row.expires_at), connected_at: Number(row.connected_at) } : null
  }

  /** A claimed session that never opened (refused, provider unreachable) may be connected again until it expires. */
  async releaseRealtimeSession(id: string) {
    await this.sql`UPDATE realtime_sessions SET connected_at = NULL WHERE id = ${id}`
  }

  async getRealtimeSession(id: string): Promise<RealtimeSessionRow | null> {
    const [row] = await this.sql`SELECT * FROM realtime_sessions WHERE id = ${id}`
    return row ? { ...row, created_at: Number(row.created_at), expires_at: Number(row.expires_at), connected_at: row.connected_at === null ? null : Number(row.connected_at) } : null
  }
}

/** A realtime session made ahead of its WebSocket; `settings` is JSON (see src/realtime/settings.ts). */
export interface RealtimeSessionRow {
  id: string
  secret_hash: string
  key_id: string
  model: string
  settings: string
  created_at: number
  expires_at: number
  connected_at: number | null
}

export interface RequestRecordFilter {
  keyId?: string
  model?: string
  provider?: string
  user?: string
  /** Inclusive status range. */
  status?: [number, number]
  from?: number
  to?: number
  /** The cursor: rows strictly older than this one. */
  before?: RecordCursor
  withBodies?: boolean
}

/** One point of a chart: the buckets of its minutes summed, their histograms joined. */
export type MetricPoint = Omit<BucketRow, 'minute' | 'instance' | 'key_id' | 'model'> & { point: number }

/** A request record's place in the newest-first order. */
export interface RecordCursor {
  createdAt: number
  id: string
}

/** A Web UI sign-in (the cookie is never stored, only its SHA-256). */
export interface SessionRow {
  token_hash: string
  role: 'admin' | 'key'
  key_id: string | null
  /** What the session was granted by: the master key's fingerprint, or the key id; checked on every use. */
  principal: string
  created_at: number
  expires_at: number
}

const toRecord = (r: any): RequestRecordRow => ({
  request_id: r.request_id,
  created_at: Number(r.created_at),
  key_id: r.key_id,
  endpoint: r.endpoint,
  model: r.model,
  provider: r.provider,
  upstream_model: r.upstream_model,
  status: Number(r.status),
  error_code: r.error_code,
  stream: Number(r.stream),
  aborted: Number(r.aborted),
  attempts: Number(r.attempts),
  latency_ms: Number(r.latency_ms),
  ttft_ms: num(r.ttft_ms),
  prompt_tokens: Number(r.prompt_tokens),
  completion_tokens: Number(r.completion_tokens),
  cost_micros: Number(r.cost_micros),
  estimated: Number(r.estimated),
  end_user: r.end_user,
  client_ip: r.client_ip,
  request_body: r.request_body ?? null,
})
