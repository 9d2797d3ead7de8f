import type { FinishedRequest, Logger } from '../plugin-sdk/types.ts'
import type { Store } from './store.ts'

export interface SpendRow {
  request_id: string
  key_id: string | null
  endpoint: string
  model: string | null
  provider: string | null
  upstream_model: string | null
  prompt_tokens: number
  completion_tokens: number
  cost_micros: number
  estimated: number
  aborted: number
  status: number
  created_at: number
  /** The request's `user`, up to MAX_USER_LENGTH characters. */
  end_user: string | null
  /** 1 when the target had no price: the cost is 0 because it is unknown, not because it was free. */
  unpriced: number
  /** Audio a transcription carried, in milliseconds; characters a speech request said. */
  audio_ms: number
  characters: number
  /** Images an image request produced. */
  images?: number
}

/** `user` values are recorded up to this length (per-user limits refuse longer ones). */
export const MAX_USER_LENGTH = 256

export interface LedgerOptions {
  /** Rows kept while the database is unreachable; past this the oldest are dropped, loudly. */
  maxQueued?: number
  /** A write not answered by then counts as the database being unreachable. */
  writeTimeoutMs?: number
}

const FLUSH_EVERY_MS = 200
const BATCH = 500
const DEFAULT_MAX_QUEUED = 100_000
/**
 * Bun.SQL has no query timeout: a stalled connection (a black-holed network) would hold the ledger, and the
 * flush at SIGTERM, for ever. Past this the rows stay queued; if the write commits after all, the retry finds them.
 */
const DEFAULT_WRITE_TIMEOUT_MS = 5_000
/** The numeric columns a request's outcome fills (the provider's usage, its cost, the status); each must fit a BIGINT. */
const AMOUNTS = ['prompt_tokens', 'completion_tokens', 'cost_micros', 'status', 'audio_ms', 'characters', 'images'] as const

/**
 * The spend ledger: one row per request that reached a provider (aborted streams included), written in
 * batches off the request path. Writes are idempotent (the request id is the key), so a batch retried after a
 * database blip or a lost reply never double-counts; rows wait in a bounded queue until the database is back,
 * and `close()` (SIGTERM) flushes what is left. A row the database refuses is found by splitting its batch,
 * set aside in the log and never retried, so it cannot hold back the others.
 */
export class SpendLedger {
  private queue: SpendRow[] = []
  /** The batch being written, out of the queue so that dropping the oldest rows meanwhile cannot shift it. */
  private writing: SpendRow[] = []
  /** Rows dropped from a full queue since the last report. */
  private dropped = 0
  private timer: Timer | null = null
  private flushing: Promise<void> | null = null
  /** Consecutive writes that found the database unreachable; drives the backoff. */
  private failures = 0
  private readonly maxQueued: number
  private readonly writeTimeoutMs: number

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    options: LedgerOptions = {},
  ) {
    this.maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED
    this.writeTimeoutMs = options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS
    if (!Number.isInteger(this.maxQueued) || this.maxQueued < 1) throw new Error(`Invalid ledger max queued: ${this.maxQueued}`)
  }

  record(f: FinishedRequest) {
    if (!f.target) return // refused before any provider was called: nothing was spent
    const row: SpendRow = {
      request_id: f.ctx.id,
      key_id: f.ctx.principal?.keyId ?? null,
      endpoint: f.ctx.endpoint,
      model: f.ctx.model?.name ?? null,
      provider: f.target.provider.name,
      upstream_model: f.target.model,
      prompt_tokens: f.usage?.prompt_tokens ?? 0,
      completion_tokens: f.usage?.completion_tokens ?? 0,
      cost_micros: f.costMicros,
      estimated: f.usage?.estimated ? 1 : 0,
      aborted: f.aborted ? 1 : 0,
      status: f.status,
      created_at: Date.now(),
      end_user: typeof f.ctx.body?.user === 'string' && f.ctx.body.user !== '' ? f.ctx.body.user.slice(0, MAX_USER_LENGTH) : null,
      unpriced: f.target.price ? 0 : 1,
      audio_ms: Math.round((f.usage?.audio_seconds ?? 0) * 1000),
      characters: f.usage?.characters ?? 0,
      images: f.usage?.images ?? 0,
    }
    this.sanitise(row)
    this.queue.push(row)
    this.bound()
    // While the database is unreachable the backoff timer alone retries: no write attempt per request.
    if (this.queue.length >= BATCH && this.failures === 0) void this.flush()
    else this.timer ??= setTimeout(() => void this.flush(), FLUSH_EVERY_MS)
  }

  /**
   * Provider numbers are input: one that is not a non-negative safe integer would fail the whole batch (NaN is
   * out of range for a BIGINT, `"abc"` is not a number). It becomes 0, and the row says its amounts are estimated.
   */
  private sanitise(row: SpendRow) {
    const invalid: string[] = []
    for (const column of AMOUNTS) {
      const value: unknown = row[column]
      const amount = typeof value === 'number' ? Math.ceil(value) : NaN
      if (Number.isSafeInteger(amount) && amount >= 0) row[column] = amount
      else {
        invalid.push(column)
        row[column] = 0
      }
    }
    if (invalid.length === 0) return
    row.estimated = 1
    this.log.warn({ requestId: row.request_id, columns: invalid }, 'spend ledger: non-numeric or negative amounts recorded as 0 (estimated)')
  }

  private bound() {
    const over = this.pending - this.maxQueued
    if (over > 0) this.dropped += this.queue.splice(0, over).length
  }

  /** Once per write attempt, not per request: an outage at full traffic would otherwise log every request. */
  private reportDropped() {
    if (this.dropped === 0) return
    this.log.error({ dropped: this.dropped, maxQueued: this.maxQueued }, 'spend ledger queue full: oldest rows dropped')
    this.dropped = 0
  }

  /** Writes everything queued; concurrent callers share one flush. */
  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    return (this.flushing ??= this.drain().finally(() => (this.flushing = null)))
  }

  private async drain() {
    while (this.queue.length > 0) {
      const batch = (this.writing = this.queue.splice(0, BATCH))
      const settled = { rows: 0 }
      try {
        await this.write(batch, settled)
        this.writing = []
        this.failures = 0
      } catch (error) {
        this.writing = []
        this.queue.unshift(...batch.slice(settled.rows))
        this.bound()
        this.reportDropped()
        this.failures++
        this.log.warn({ err: error, queued: this.queue.length }, 'spend ledger: database unreachable; will retry')
        // Back off, then try again on the next timer; the rows stay queued.
        this.timer ??= setTimeout(() => void this.flush(), Math.min(5_000, 100 * 2 ** this.failures))
        return
      }
    }
    this.reportDropped()
  }

  /**
   * Writes `rows` in one statement; if the database rejects it, writes each half the same way, down to the one
   * row at fault, which is set aside. Rows are settled in order, so `settled.rows` is always a prefix of `rows`.
   * Throws when the database cannot be reached: then the unsettled rows must wait.
   */
  private async write(rows: SpendRow[], settled: { rows: number }): Promise<void> {
    try {
      await this.insert(rows)
    } catch (error) {
      if (!isRejection(error)) throw error
      if (rows.length === 1) {
        this.log.error({ err: error, requestId: rows[0]!.request_id, row: rows[0] }, 'spend ledger: the database refused this row; set aside')
      } else {
        const half = Math.ceil(rows.length / 2)
        await this.write(rows.slice(0, half), settled)
        await this.write(rows.slice(half), settled)
        return
      }
    }
    settled.rows += rows.length
  }

  private async insert(rows: SpendRow[]) {
    let timer: Timer | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`spend ledger write not answered within ${this.writeTimeoutMs} ms`)), this.writeTimeoutMs)
    })
    try {
      await Promise.race([this.store.insertSpend(rows), timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Rows not yet written: queued or being written. */
  get pending() {
    return this.queue.length + this.writing.length
  }

  async close() {
    await this.flush()
    if (this.pending > 0) this.log.error({ lost: this.pending }, 'spend ledger rows could not be written before exit')
    if (this.timer) clearTimeout(this.timer)
  }
}

/**
 * True when the database answered and refused the data (the same statement would fail again), as opposed to
 * being unreachable, shutting down or busy (worth retrying as is). PostgreSQL: SQLSTATE class 22 (data
 * exception) or 23 (integrity constraint); SQLite: a constraint, type or size error; either: the driver could not
 * encode a value.
 */
function isRejection(error: unknown): boolean {
  if (error instanceof TypeError) return true
  const { code, errno } = (error ?? {}) as { code?: unknown; errno?: unknown }
  if (code === 'ERR_POSTGRES_SERVER_ERROR') return /^2[23]/.test(String(errno))
  return typeof code === 'string' && /^SQLITE_(CONSTRAINT|MISMATCH|TOOBIG|RANGE)/.test(code)
}
