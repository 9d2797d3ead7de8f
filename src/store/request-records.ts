import type { FinishedRequest, Logger } from '../plugin-sdk/types.ts'
import { MAX_USER_LENGTH } from './ledger.ts'
import type { Store } from './store.ts'

/** One row of `request_records`: what the Requests page lists, a ledger row plus how the request went. */
export interface RequestRecordRow {
  request_id: string
  /** When the request arrived (epoch ms). */
  created_at: number
  key_id: string | null
  endpoint: string
  /** The virtual model, or the name the client asked for when it does not exist. */
  model: string | null
  provider: string | null
  upstream_model: string | null
  status: number
  error_code: string | null
  stream: number
  aborted: number
  attempts: number
  latency_ms: number
  /** Time to the first byte sent to the client; null when nothing was sent from a provider. */
  ttft_ms: number | null
  prompt_tokens: number
  completion_tokens: number
  cost_micros: number
  estimated: number
  end_user: string | null
  client_ip: string | null
  /** The request's JSON body, only with `request_log.record_bodies` on. */
  request_body: string | null
}

export interface RequestRecordOptions {
  /** Days a row is kept; older rows are deleted hourly. */
  retentionDays: number
  /** Whether request bodies are stored (off by default: prompts are often personal data). */
  recordBodies: boolean
  /** Rows held while the database is unreachable; past it the oldest are dropped (logged). */
  maxQueued?: number
}

/** Endpoints that are not traffic to a model: not recorded, not charted. */
export const UNRECORDED = new Set(['models', 'usage'])
/** A stored body is cut here: the detail view is for reading, not for replaying megabyte prompts. */
export const MAX_BODY_CHARS = 64 * 1024
const DAY_MS = 86_400_000
const PURGE_EVERY_MS = 3_600_000

/** Client addresses captured while the socket is known (see RequestRecorder.clientAddress), by request context. */
const CLIENT_IP = 'conduit.clientIp'

/**
 * A queue written in batches off the request path: bounded, retried with backoff while the database is
 * unreachable, each write under a timeout (Bun.SQL has none), and a batch the database refuses split down to
 * the one row at fault, which is logged and set aside. The same rules as the spend ledger (ledger.ts), for rows
 * whose writes are idempotent.
 */
export class BatchWriter<T> {
  private queue: T[] = []
  private writing = 0
  private dropped = 0
  private timer: Timer | null = null
  private flushing: Promise<void> | null = null
  private failures = 0

  constructor(
    private readonly name: string,
    private readonly insert: (rows: T[]) => Promise<unknown>,
    private readonly log: Logger,
    private readonly o: { batch: number; flushEveryMs: number; maxQueued: number; writeTimeoutMs?: number },
  ) {}

  push(row: T) {
    this.queue.push(row)
    const over = this.queue.length + this.writing - this.o.maxQueued
    if (over > 0) this.dropped += this.queue.splice(0, over).length
    if (this.queue.length >= this.o.batch && this.failures === 0) void this.flush()
    else this.timer ??= setTimeout(() => void this.flush(), this.o.flushEveryMs)
  }

  get pending() {
    return this.queue.length + this.writing
  }

  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    return (this.flushing ??= this.drain().finally(() => (this.flushing = null)))
  }

  private async drain() {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.o.batch)
      this.writing = batch.length
      const settled = { rows: 0 }
      try {
        await this.write(batch, settled)
        this.failures = 0
      } catch (error) {
        this.queue.unshift(...batch.slice(settled.rows))
        this.failures++
        this.log.warn({ err: error, queued: this.queue.length }, `${this.name}: database unreachable; will retry`)
        this.timer ??= setTimeout(() => void this.flush(), Math.min(5_000, 100 * 2 ** this.failures))
        return
      } finally {
        this.writing = 0
        if (this.dropped > 0) {
          this.log.error({ dropped: this.dropped }, `${this.name}: queue full, oldest rows dropped`)
          this.dropped = 0
        }
      }
    }
  }

  private async write(rows: T[], settled: { rows: number }): Promise<void> {
    try {
      await this.timed(rows)
    } catch (error) {
      if (!isRejection(error)) throw error
      if (rows.length === 1) this.log.error({ err: error, row: rows[0] }, `${this.name}: the database refused this row; set aside`)
      else {
        const half = Math.ceil(rows.length / 2)
        await this.write(rows.slice(0, half), settled)
        await this.write(rows.slice(half), settled)
        return
      }
    }
    settled.rows += rows.length
  }

  private async timed(rows: T[]) {
    const ms = this.o.writeTimeoutMs ?? 5_000
    let timer: Timer | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} write not answered within ${ms} ms`)), ms)
    })
    try {
      await Promise.race([this.insert(rows), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  async close() {
    await this.flush()
    if (this.timer) clearTimeout(this.timer)
    if (this.pending > 0) this.log.error({ lost: this.pending }, `${this.name}: rows could not be written before exit`)
  }
}

/** The database refused the data (it would again), as opposed to being unreachable (worth retrying). Same test as the ledger's. */
function isRejection(error: unknown): boolean {
  if (error instanceof TypeError) return true
  const { code, errno } = (error ?? {}) as { code?: unknown; errno?: unknown }
  if (code === 'ERR_POSTGRES_SERVER_ERROR') return /^2[23]/.test(String(errno))
  return typeof code === 'string' && /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/.test(code)
}

const count = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) && value >= 0 ? Math.min(Math.round(value), Number.MAX_SAFE_INTEGER) : 0)

/** JSON of a request body without uploads (a multipart body carries its file as an object). */
function bodyText(body: Record<string, any> | null): string | null {
  if (!body) return null
  let text: string
  try {
    text = JSON.stringify(body, (name, value) =>
      value instanceof Blob || value instanceof ArrayBuffer || ArrayBuffer.isView(value) || (name === 'file' && typeof value === 'object' && value !== null)
        ? '[binary]'
        : value,
    )
  } catch {
    return null
  }
  return text.length > MAX_BODY_CHARS ? `${text.slice(0, MAX_BODY_CHARS)}… [cut at ${MAX_BODY_CHARS} characters]` : text
}

/**
 * Writes `request_records`. `record()` runs when a request finishes (from an onLog hook): it builds one small
 * object and pushes it; the batch goes to the database every 250 ms or 500 rows. Rows older than the retention
 * are deleted hourly, here and in the metric buckets (and expired Web UI sessions with them).
 */
export class RequestRecorder {
  private readonly writer: BatchWriter<RequestRecordRow>
  private readonly purger: Timer

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    readonly options: RequestRecordOptions,
  ) {
    this.writer = new BatchWriter('request records', (rows) => store.insertRequestRecords(rows), log, {
      batch: 500,
      flushEveryMs: 250,
      maxQueued: options.maxQueued ?? 100_000,
    })
    this.purger = setInterval(() => void this.purge(), PURGE_EVERY_MS)
    this.purger.unref()
  }

  /** Captures the client's address while the socket is still known (from an onAuth hook: the last moment it is). */
  static rememberClient(shared: Record<string, unknown>, address: string | null | undefined) {
    if (address) shared[CLIENT_IP] = address
  }

  record(f: FinishedRequest) {
    const ctx = f.ctx
    if (UNRECORDED.has(ctx.endpoint)) return
    const body = ctx.body
    const usage = f.usage
    const asked = typeof body?.model === 'string' ? body.model.slice(0, 256) : null
    this.writer.push({
      request_id: ctx.id,
      created_at: Math.round(Date.now() - f.durationMs),
      key_id: ctx.principal?.keyId ?? null,
      endpoint: ctx.endpoint,
      model: ctx.model?.name ?? asked,
      provider: f.target?.provider.name ?? null,
      upstream_model: f.target?.model ?? null,
      status: count(f.status),
      error_code: f.error?.code ?? null,
      stream: f.stream ? 1 : 0,
      aborted: f.aborted ? 1 : 0,
      attempts: f.attempts,
      latency_ms: Math.round(f.durationMs * 100) / 100,
      ttft_ms: f.firstByteMs === null ? null : Math.round(f.firstByteMs * 100) / 100,
      prompt_tokens: count(usage?.prompt_tokens),
      completion_tokens: count(usage?.completion_tokens),
      cost_micros: count(f.costMicros),
      estimated: usage?.estimated ? 1 : 0,
      end_user: typeof body?.user === 'string' && body.user !== '' ? body.user.slice(0, MAX_USER_LENGTH) : null,
      client_ip: (ctx.shared[CLIENT_IP] as string | undefined) ?? null,
      request_body: this.options.recordBodies ? bodyText(body) : null,
    })
  }

  /** Deletes what is past the retention; returns the rows removed. */
  async purge(now = Date.now()): Promise<number> {
    const before = now - this.options.retentionDays * DAY_MS
    try {
      return await this.store.purgeRequestData(before, now)
    } catch (err) {
      this.log.warn({ err }, 'request records: retention purge failed; will try again')
      return 0
    }
  }

  flush() {
    return this.writer.flush()
  }

  get pending() {
    return this.writer.pending
  }

  async close() {
    clearInterval(this.purger)
    await this.writer.close()
  }
}
