import { endUserOf } from '../plugin-sdk/end-user.ts'
import type { FinishedRequest, Logger } from '../plugin-sdk/types.ts'
import { wentUnpriced } from '../pricing/prices.ts'
import { BatchWriter } from './batch-writer.ts'
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

/** The table's columns: every field of a row, checked by the compiler (an insert binds them in this order). */
export const SPEND_COLUMNS = Object.keys({
  request_id: 1, key_id: 1, endpoint: 1, model: 1, provider: 1, upstream_model: 1, prompt_tokens: 1, completion_tokens: 1, cost_micros: 1,
  estimated: 1, aborted: 1, status: 1, created_at: 1, end_user: 1, unpriced: 1, audio_ms: 1, characters: 1, images: 1,
} satisfies Record<keyof SpendRow, 1>)

/**
 * A provider's number as a stored amount: rounded up to a non-negative safe integer, or null when it is not one
 * (NaN, a string, a price that overflowed). What the ledger and the metric buckets both store.
 */
export function storedAmount(value: unknown): number | null {
  const amount = typeof value === 'number' ? Math.ceil(value) : NaN
  return Number.isSafeInteger(amount) && amount >= 0 ? amount : null
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
  private readonly rows: BatchWriter<SpendRow>

  constructor(
    store: Store,
    private readonly log: Logger,
    options: LedgerOptions = {},
  ) {
    const maxQueued = options.maxQueued ?? DEFAULT_MAX_QUEUED
    if (!Number.isInteger(maxQueued) || maxQueued < 1) throw new Error(`Invalid ledger max queued: ${maxQueued}`)
    this.rows = new BatchWriter('spend ledger', (rows) => store.insertSpend(rows), log, {
      batch: store.rowsPerBatch,
      flushEveryMs: FLUSH_EVERY_MS,
      maxQueued,
      writeTimeoutMs: options.writeTimeoutMs ?? DEFAULT_WRITE_TIMEOUT_MS,
      describe: (row) => ({ requestId: row.request_id }),
    })
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
      end_user: endUserOf(f.ctx.body)?.value.slice(0, MAX_USER_LENGTH) ?? null,
      unpriced: wentUnpriced(f.target.price, f.usage, f.costMicros) ? 1 : 0,
      audio_ms: Math.round((f.usage?.audio_seconds ?? 0) * 1000),
      characters: f.usage?.characters ?? 0,
      images: f.usage?.images ?? 0,
    }
    this.sanitise(row)
    this.rows.push(row)
  }

  /**
   * Provider numbers are input: one that is not a non-negative safe integer would fail the whole batch (NaN is
   * out of range for a BIGINT, `"abc"` is not a number). It becomes 0, and the row says its amounts are estimated.
   */
  private sanitise(row: SpendRow) {
    const invalid: string[] = []
    for (const column of AMOUNTS) {
      const amount = storedAmount(row[column])
      if (amount !== null) row[column] = amount
      else {
        invalid.push(column)
        row[column] = 0
      }
    }
    if (invalid.length === 0) return
    row.estimated = 1
    this.log.warn({ requestId: row.request_id, columns: invalid }, 'spend ledger: non-numeric or negative amounts recorded as 0 (estimated)')
  }

  /** Writes everything queued; concurrent callers share one flush. */
  flush(): Promise<void> {
    return this.rows.flush()
  }

  /** Rows not yet written: queued or being written. */
  get pending() {
    return this.rows.pending
  }

  close(): Promise<void> {
    return this.rows.close()
  }
}
