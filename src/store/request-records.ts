import { endUserOf } from '../plugin-sdk/end-user.ts'
import type { FinishedRequest, Logger } from '../plugin-sdk/types.ts'
import { BatchWriter } from './batch-writer.ts'
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

/** The table's columns: every field of a row, checked by the compiler (an insert binds them in this order). */
export const RECORD_COLUMNS = Object.keys({
  request_id: 1, created_at: 1, key_id: 1, endpoint: 1, model: 1, provider: 1, upstream_model: 1, status: 1, error_code: 1, stream: 1, aborted: 1,
  attempts: 1, latency_ms: 1, ttft_ms: 1, prompt_tokens: 1, completion_tokens: 1, cost_micros: 1, estimated: 1, end_user: 1, client_ip: 1, request_body: 1,
} satisfies Record<keyof RequestRecordRow, 1>)

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
 * object and pushes it; the batch goes to the database every 250 ms or `store.rowsPerBatch` rows. Rows older than
 * the retention are deleted hourly, here and in the metric buckets (and expired Web UI sessions with them).
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
      batch: store.rowsPerBatch,
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
      // On the monotonic clock: Date.now() minus a fine duration could put a request before the one that ended
      // just ahead of it (and ties are broken by the id, which is in arrival order).
      created_at: Math.floor(performance.timeOrigin + ctx.startedAt),
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
      end_user: endUserOf(body)?.value.slice(0, MAX_USER_LENGTH) ?? null,
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
