/**
 * The essentials: what any gateway on Bun must do for a chat completion, and nothing more. Against the floor it shows
 * what that work costs; against Conduit, what everything else does. Run by `FLOOR=essentials bench/profile.sh` and
 * `FLOOR=essentials bench/instructions.sh`, with its one key (ESSENTIALS_KEY). Not a gateway: one key, one model, no
 * error handling beyond passing an upstream error on.
 *
 * A request: the key looked up in an LRU cache, the body read and parsed, the model mapped, the body sent upstream as
 * JSON with the provider's key, the answer read whole, its usage parsed and priced, the model name spliced back, and a
 * response with Conduit's six headers; then a spend row handed to a thread that inserts it into SQLite (a primary key
 * and one index, as the ledger has), and a request line to stdout, batched.
 *
 * ESSENTIALS_ADD=<piece>,… adds pieces of Conduit, its own code where it can be lifted out, to price each in this
 * quiet setting (bench/README.md has their prices):
 * - body: Conduit's body reader (the size cap and the deadline) in place of `request.text()`;
 * - upstream: its upstream call (the watched call with its deadlines and the egress check) and capped read;
 * - ctx: a RequestCtx a request, and its finish();
 * - record: a request record (RequestRecorder, its batch writer), inserted as a second row with the table's indexes;
 * - metrics: the /metrics counters and the Overview's buckets;
 * - log: Conduit's logger (pino's line, the scrub of secrets) for the request line;
 * - settle: the accounting on the loop's next turn rather than before the response is returned;
 * - layers: Conduit's shape, four nested async functions with seven awaits of values that are not promises;
 * - hooks: the plugin host with every built-in plugin, as Conduit loads them (auth, limits, budgets, the request line
 *   from request-log, the providers), its request-side phases and onLog; with a RequestCtx, which they need.
 */
import { Database } from 'bun:sqlite'
import { LRUCache } from 'lru-cache'
import { costMicros, microsToUsd } from '../src/pricing/prices.ts'
import { extractUsage, spliceModel } from '../src/core/wire.ts'
import type { FinishedRequest, Usage } from '../src/plugin-sdk/types.ts'
import { readJsonBody } from '../src/core/body.ts'
import { RequestCtx } from '../src/core/context.ts'
import { egress } from '../src/core/egress.ts'
import { UpstreamCall } from '../src/core/upstream.ts'
import { readUpstreamText } from '../src/core/upstream-body.ts'
import { TimeSeries } from '../src/core/timeseries.ts'
import { Metrics } from '../src/services/metrics.ts'
import { createLogger } from '../src/services/logger.ts'
import { RECORD_COLUMNS, RequestRecorder, type RequestRecordRow } from '../src/store/request-records.ts'
import type { Store } from '../src/store/store.ts'
import { PluginHost } from '../src/plugin-host/host.ts'
import { BUILTINS } from '../src/plugin-host/builtins.ts'
import { Attempt } from '../src/core/context.ts'
import { sha256 } from '../src/store/crypto.ts'
import { GatewayError } from '../src/plugin-sdk/errors.ts'
import { errorResponse } from '../src/http/error-response.ts'

/** Well-formed (its checksum holds), so that Conduit's auth plugin looks it up. */
export const ESSENTIALS_KEY = 'condt_000000000000000000000000000000000essentials1cgmmrj'

declare const self: Worker
type Batch = { spend?: unknown[][]; records?: RequestRecordRow[] }

if (!Bun.isMainThread) {
  // The row writer: each message is a batch of rows as JSON, inserted in one transaction.
  const db = new Database(`${process.env.ESSENTIALS_DIR ?? '/tmp'}/essentials-${process.pid}.sqlite`)
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS spend (request_id TEXT PRIMARY KEY, key_id TEXT, model TEXT, provider TEXT, upstream_model TEXT,
      status INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, cost_micros INTEGER, latency_ms REAL, created_at INTEGER);
    CREATE INDEX IF NOT EXISTS spend_key_time ON spend (key_id, created_at);
    CREATE TABLE IF NOT EXISTS request_records (${RECORD_COLUMNS.map((c) => (c === 'request_id' ? `${c} TEXT PRIMARY KEY` : c)).join(', ')});
    CREATE INDEX IF NOT EXISTS request_records_time ON request_records (created_at, request_id);
    CREATE INDEX IF NOT EXISTS request_records_key_time ON request_records (key_id, created_at);
    CREATE INDEX IF NOT EXISTS request_records_model_time ON request_records (model, created_at);`)
  const spend = db.prepare('INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
  const record = db.prepare(`INSERT INTO request_records VALUES (${RECORD_COLUMNS.map(() => '?').join(', ')})`)
  const insertAll = db.transaction((batch: Batch) => {
    for (const row of batch.spend ?? []) spend.run(...(row as any[]))
    for (const row of batch.records ?? []) record.run(...(RECORD_COLUMNS.map((c) => row[c as keyof RequestRecordRow]) as any[]))
  })
  self.onmessage = (event: MessageEvent<string>) => insertAll(JSON.parse(event.data))
} else {
  const add = new Set((process.env.ESSENTIALS_ADD ?? '').split(',').filter(Boolean))
  const upstream = process.env.UPSTREAM!
  const keys = new LRUCache<string, { keyId: string; enabled: boolean }>({ max: 10_000 })
  keys.set(ESSENTIALS_KEY, { keyId: 'key_essentials', enabled: true })
  const target = { provider: 'mock', model: 'gpt-4o-mini', price: { input: 1, output: 1 } }
  const models = new Map([['m', target]])
  const writer = new Worker(import.meta.url)
  const stdout = Bun.stdout.writer()
  let spendRows: unknown[][] = []
  let lines: string[] = []
  let sequence = 0
  const flush = () => {
    writer.postMessage(JSON.stringify({ spend: spendRows } satisfies Batch))
    spendRows = []
    for (const line of lines) stdout.write(line)
    lines = []
    stdout.flush()
  }

  // The pieces of Conduit that ESSENTIALS_ADD may name.
  const log = createLogger('info')
  egress.configure(['127.0.0.1'])
  const timeouts = { connectMs: 10_000, firstByteMs: 600_000, idleMs: 600_000 }
  const store = {
    rowsPerBatch: 2_000,
    insertRequestRecords: async (records: RequestRecordRow[]) => writer.postMessage(JSON.stringify({ records } satisfies Batch)),
    purgeRequestData: async () => 0,
  } as unknown as Store
  const recorder = add.has('record') ? new RequestRecorder(store, log, { retentionDays: 7, recordBodies: false }) : null
  const metrics = new Metrics()
  const timeseries = add.has('metrics') ? new TimeSeries({ upsertMetricBuckets: async () => {} } as unknown as Store, log) : null
  const principal = { keyId: 'key_essentials', name: 'essentials', allowedModels: null, allowedEndpoints: null, limits: null, metadata: null }
  const virtualModel = { name: 'm' }
  const upstreamTarget = { provider: { name: target.provider }, model: target.model, price: target.price }
  const host = add.has('hooks')
    ? new PluginHost({
        log,
        metrics,
        builtins: BUILTINS,
        baseDir: process.cwd(),
        store: {
          findKeyByHash: async (hash) => (hash === sha256(ESSENTIALS_KEY) ? { ...principal, id: principal.keyId, enabled: true, expiresAt: null, metadata: {} } : null),
          spentMicros: async () => 0,
          onChange: () => () => {},
        },
      })
    : null
  await host?.load(Object.keys(BUILTINS).map((name) => ({ use: `builtin:${name}` })))

  interface Answered {
    id: string
    keyId: string
    body: Record<string, any>
    usage: Usage
    cost: number
    started: number
    ctx: RequestCtx | null
  }

  const account = (a: Answered) => {
    const latencyMs = performance.now() - a.started
    if (spendRows.push([a.id, a.keyId, 'm', target.provider, target.model, 200, a.usage.prompt_tokens, a.usage.completion_tokens, a.cost, latencyMs, Date.now()]) === 1) setImmediate(flush)
    if (recorder || timeseries || host) {
      const finished = (a.ctx?.finish(false) ?? {
        ctx: { id: a.id, endpoint: 'chat', principal, model: virtualModel, body: a.body, startedAt: a.started, shared: {} },
        status: 200, error: null, aborted: false, stream: false, usage: a.usage, target: upstreamTarget, attempts: 1, costMicros: a.cost, durationMs: latencyMs, firstByteMs: null,
      }) as FinishedRequest
      recorder?.record(finished)
      host?.log(finished)
      if (timeseries) {
        metrics.record(finished)
        timeseries.record(finished)
      }
    }
    const fields = { requestId: a.id, keyId: a.keyId, model: 'm', status: 200, usage: a.usage, durationMs: latencyMs }
    if (host) return // request-log's onLog wrote the line
    if (add.has('log')) log.record('info', fields, 'request')
    else lines.push(`${JSON.stringify({ level: 'info', time: Date.now(), ...fields, msg: 'request' })}\n`)
  }
  let answered: Answered[] = []
  const accountAnswered = () => {
    const list = answered
    answered = []
    for (const a of list) account(a)
  }

  async function serve(request: Request): Promise<Response> {
    const started = performance.now()
    const ctx = add.has('ctx') || host ? new RequestCtx('chat', 'chat', request, log) : null
    if (host && ctx) {
      // Each hook's answer is awaited only when it is a promise: this prices the hooks, `layers` the awaits.
      let early = host.run('onRequest', ctx)
      if (early instanceof Promise) early = await early
      let refused = early ?? host.authenticate(ctx)
      if (refused instanceof Promise) refused = await refused
      if (refused instanceof Response) return refused
      if (refused) ctx.principal = refused
    }
    const key = keys.get(request.headers.get('authorization')?.slice(7) ?? '')
    if (!key?.enabled || (host && !ctx?.principal)) return Response.json({ error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key' } }, { status: 401 })
    const body = (add.has('body') ? await readJsonBody(request, 1 << 20, 30_000, () => ({})) : JSON.parse(await request.text())) as Record<string, any>
    const asked = body.model
    if (host && ctx) {
      Object.assign(ctx, { body, model: virtualModel })
      let access = host.run('onAccess', ctx)
      if (access instanceof Promise) access = await access
      let refused = access ?? host.run('onRequestBody', ctx)
      if (refused instanceof Promise) refused = await refused
      if (refused) return refused
    }
    body.model = models.get(asked)!.model
    const upstreamRequest = { url: `${upstream}/chat/completions`, method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench-mock' }, body: JSON.stringify(body) }
    body.model = asked
    const hooked = host && ctx ? host.upstreamRequest(new Attempt(ctx, upstreamTarget as never, 1), upstreamRequest) : undefined
    if (hooked) await hooked
    let text: string
    if (add.has('upstream')) {
      const call = new UpstreamCall(request.signal, target.provider)
      text = await readUpstreamText(await call.fetch(upstreamRequest, timeouts), call, 1 << 24, target.provider)
    } else {
      const response = await fetch(upstreamRequest.url, { ...upstreamRequest, signal: request.signal, redirect: 'manual' })
      if (!response.ok) return new Response(response.body, { status: response.status, headers: { 'content-type': 'application/json' } })
      text = await response.text()
    }
    const usage = extractUsage(text) as Usage
    const cost = costMicros(target.price, usage)
    const id = ctx?.id ?? `req_essentials${(sequence++).toString(36).padStart(8, '0')}`
    if (ctx) Object.assign(ctx, { principal, model: virtualModel, body, target: upstreamTarget, usage, costMicros: cost, status: 200, attempts: 1 })
    const answer = new Response(spliceModel(text, 'm'), {
      headers: {
        'content-type': 'application/json',
        'x-request-id': id,
        'x-conduit-provider': target.provider,
        'x-conduit-model': target.model,
        'x-conduit-attempts': '1',
        'x-conduit-cost-usd': microsToUsd(cost),
      },
    })
    const done: Answered = { id, keyId: key.keyId, body, usage, cost, started, ctx }
    if (!add.has('settle')) account(done)
    else if (answered.push(done) === 1) setImmediate(accountAnswered)
    return answer
  }

  // Conduit's shape (handle → run → proxy → attempt), with the awaits its hooks and adapters cost when they answer at once.
  const now = () => undefined
  const handle = async (request: Request) => await run(request)
  const run = async (request: Request) => {
    ;(await now()) ?? (await now())
    await now()
    return await proxy(request)
  }
  const proxy = async (request: Request) => {
    await now()
    return await attempt(request)
  }
  const attempt = async (request: Request) => {
    await now()
    await now()
    await now()
    return serve(request)
  }

  const server = Bun.serve({
    port: Number(process.env.PORT ?? 0),
    hostname: '127.0.0.1',
    idleTimeout: 0,
    fetch: add.has('layers') ? handle : serve,
    // A hook's refusal (the auth plugin's 401) in Conduit's envelope.
    error: (error) => (GatewayError.is(error) ? errorResponse(error) : new Response(null, { status: 500 })),
  })
  console.log(`essentials on http://127.0.0.1:${server.port}/v1${add.size > 0 ? ` with ${[...add].join(', ')}` : ''}`)
  process.on('SIGTERM', () => process.exit(0))
}
