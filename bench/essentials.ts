/**
 * The essentials: what any gateway on Bun must do for a chat completion, and nothing more. Against the floor it shows
 * what that work costs; against Conduit, what everything else does (hooks, the router and its breakers, the deadlines,
 * request records, metrics and the Overview's buckets). Run by `FLOOR=essentials bench/profile.sh` and
 * `FLOOR=essentials bench/instructions.sh`, with the key `condt_essentials`. Not a gateway: one key, one model, no
 * error handling beyond passing an upstream error on.
 *
 * A request: the key looked up in an LRU cache, the body read and parsed, the model mapped, the body sent upstream as
 * JSON with the provider's key, the answer read whole, its usage parsed and priced, the model name spliced back, and a
 * response with Conduit's six headers; then a spend row handed to a thread that inserts it into SQLite (a primary key
 * and one index, as the ledger has), and a request line to stdout, batched.
 */
import { Database } from 'bun:sqlite'
import { LRUCache } from 'lru-cache'
import { costMicros, microsToUsd } from '../src/pricing/prices.ts'
import { extractUsage, spliceModel } from '../src/core/wire.ts'
import type { Usage } from '../src/plugin-sdk/types.ts'

declare const self: Worker

if (!Bun.isMainThread) {
  // The row writer: each message is a batch of rows as JSON, inserted in one transaction.
  const db = new Database(`${process.env.ESSENTIALS_DIR ?? '/tmp'}/essentials-${process.pid}.sqlite`)
  db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS spend (request_id TEXT PRIMARY KEY, key_id TEXT, model TEXT, provider TEXT, upstream_model TEXT,
      status INTEGER, prompt_tokens INTEGER, completion_tokens INTEGER, cost_micros INTEGER, latency_ms REAL, created_at INTEGER);
    CREATE INDEX IF NOT EXISTS spend_key_time ON spend (key_id, created_at);`)
  const insert = db.prepare('INSERT INTO spend VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)')
  const insertAll = db.transaction((rows: unknown[][]) => {
    for (const row of rows) insert.run(...(row as any[]))
  })
  self.onmessage = (event: MessageEvent<string>) => insertAll(JSON.parse(event.data))
} else {
  const upstream = process.env.UPSTREAM!
  const keys = new LRUCache<string, { keyId: string; enabled: boolean }>({ max: 10_000 })
  keys.set('condt_essentials', { keyId: 'key_essentials', enabled: true })
  const models = new Map([['m', { provider: 'mock', model: 'gpt-4o-mini', price: { input: 1, output: 1 } }]])
  const writer = new Worker(import.meta.url)
  const stdout = Bun.stdout.writer()
  let rows: unknown[][] = []
  let lines: string[] = []
  let sequence = 0
  const flush = () => {
    writer.postMessage(JSON.stringify(rows))
    rows = []
    for (const line of lines) stdout.write(line)
    lines = []
    stdout.flush()
  }
  const server = Bun.serve({
    port: Number(process.env.PORT ?? 0),
    hostname: '127.0.0.1',
    idleTimeout: 0,
    async fetch(request) {
      const started = performance.now()
      const principal = keys.get(request.headers.get('authorization')?.slice(7) ?? '')
      if (!principal?.enabled) return Response.json({ error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', code: 'invalid_api_key' } }, { status: 401 })
      const body = JSON.parse(await request.text())
      const target = models.get(body.model)!
      body.model = target.model
      const response = await fetch(`${upstream}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench-mock' },
        body: JSON.stringify(body),
        signal: request.signal,
        redirect: 'manual',
      })
      if (!response.ok) return new Response(response.body, { status: response.status, headers: { 'content-type': 'application/json' } })
      const text = await response.text()
      const usage = extractUsage(text) as Usage
      const cost = costMicros(target.price, usage)
      const id = `req_essentials${(sequence++).toString(36).padStart(8, '0')}`
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
      const latencyMs = performance.now() - started
      if (rows.push([id, principal.keyId, 'm', target.provider, target.model, 200, usage.prompt_tokens, usage.completion_tokens, cost, latencyMs, Date.now()]) === 1) setImmediate(flush)
      lines.push(`${JSON.stringify({ level: 'info', time: Date.now(), requestId: id, keyId: principal.keyId, model: 'm', status: 200, usage, durationMs: latencyMs, msg: 'request' })}\n`)
      return answer
    },
  })
  console.log(`essentials on http://127.0.0.1:${server.port}/v1`)
  process.on('SIGTERM', () => process.exit(0))
}
