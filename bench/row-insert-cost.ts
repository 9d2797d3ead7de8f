/**
 * What the two rows of a request (its ledger row and its request record) cost to write, through the store's real
 * path (JSON handoff, the row writer's thread, its SQLite connection), by how many keys and models the traffic
 * spreads over and how many rows a transaction carries.
 *
 *   bun bench/row-insert-cost.ts [--keys 1,40] [--models 1,7] [--batch 500,2000,8000] [--requests 40000]
 *
 * The bench's throughput arms use one key and one model: every index insert lands on the same leaf page. Real
 * traffic spreads over many, and each transaction then dirties a leaf page per key and model in each index.
 * Prints CPU µs a request (every thread of this process) after 20,000 requests already in the tables.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Store } from '../src/store/store.ts'
import type { SpendRow } from '../src/store/ledger.ts'
import type { RequestRecordRow } from '../src/store/request-records.ts'

const { values: args } = parseArgs({
  args: process.argv.slice(2),
  options: {
    keys: { type: 'string', default: '1,40' },
    models: { type: 'string', default: '1,7' },
    batch: { type: 'string', default: '500,2000,8000' },
    requests: { type: 'string', default: '40000' },
  },
})
const list = (s: string) => s.split(',').map(Number)
const requests = Number(args.requests)
const PREFILL = 20_000

let seq = 0
function rows(keys: number, models: number): [SpendRow, RequestRecordRow] {
  const n = seq++
  const request_id = `req_0123456789ab${n.toString(36).padStart(8, '0')}`
  const common = { request_id, key_id: `key_${n % keys}`, endpoint: 'chat', model: `model-${n % models}`, provider: 'mock', upstream_model: 'gpt-4o-mini' }
  const created_at = Date.now()
  const usage = { prompt_tokens: 12, completion_tokens: 16, cost_micros: 28, estimated: 0, aborted: 0, status: 200, end_user: null }
  return [
    { ...common, ...usage, created_at, unpriced: 0, audio_ms: 0, characters: 0, images: 0 },
    { ...common, ...usage, created_at, error_code: null, stream: 0, attempts: 1, latency_ms: 1.23, ttft_ms: 1.2, client_ip: '127.0.0.1', request_body: null },
  ]
}

async function write(store: Store, count: number, batch: number, keys: number, models: number) {
  for (let done = 0; done < count; done += batch) {
    const spend: SpendRow[] = []
    const records: RequestRecordRow[] = []
    for (let i = 0; i < Math.min(batch, count - done); i++) {
      const [s, r] = rows(keys, models)
      spend.push(s)
      records.push(r)
    }
    await Promise.all([store.insertSpend(spend), store.insertRequestRecords(records)])
  }
}

console.log('keys models batch  CPU µs a request (ledger row + record)')
for (const keys of list(args.keys!)) {
  for (const models of list(args.models!)) {
    for (const batch of list(args.batch!)) {
      const dir = mkdtempSync(path.join(tmpdir(), 'conduit-rows-'))
      const store = await Store.open({ dataDir: dir })
      try {
        await write(store, PREFILL, batch, keys, models)
        const before = process.cpuUsage()
        await write(store, requests, batch, keys, models)
        const cpu = process.cpuUsage(before)
        console.log(`${String(keys).padStart(4)} ${String(models).padStart(6)} ${String(batch).padStart(5)}  ${((cpu.user + cpu.system) / requests).toFixed(1)}`)
      } finally {
        await store.close()
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }
}
