/**
 * What the two rows of a request (its ledger row and its request record) cost to write, through the store's real
 * path (JSON handoff, the row writer's thread, its SQLite connection), by how many keys and models the traffic
 * spreads over and how many rows a transaction carries.
 *
 *   bun bench/row-insert-cost.ts [--keys 1,40] [--models 1,7] [--batch 500,2000,8000] [--requests 40000] [--prefill 20000]
 *
 * The bench's throughput arms use one key and one model: every index insert lands on the same leaf page. Real
 * traffic spreads over many, and each transaction then dirties a leaf page per key and model in each index.
 * Prints CPU µs a request (every thread of this process) after `--prefill` requests already in the tables (a store of
 * millions of rows, whose indexes outgrow SQLite's page cache, writes differently from a new one).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { newRequestId } from '../src/core/context.ts'
import { Store } from '../src/store/store.ts'
import { recordRow, spendRow } from '../test/helpers/ledger-rows.ts'

const { values: args } = parseArgs({
  args: process.argv.slice(2),
  options: {
    keys: { type: 'string', default: '1,40' },
    models: { type: 'string', default: '1,7' },
    batch: { type: 'string', default: '500,2000,8000' },
    requests: { type: 'string', default: '40000' },
    prefill: { type: 'string', default: '20000' },
  },
})
const list = (s: string) => s.split(',').map(Number)
const requests = Number(args.requests)
const PREFILL = Number(args.prefill)

let seq = 0

async function write(store: Store, count: number, batch: number, keys: number, models: number) {
  for (let done = 0; done < count; done += batch) {
    const size = Math.min(batch, count - done)
    // The store tests' rows with the gateway's request ids, spread round-robin over `keys` keys and `models` models.
    const spread = Array.from({ length: size }, () => {
      const n = seq++
      return { request_id: newRequestId(), key_id: `key_${n % keys}`, model: `model-${n % models}` }
    })
    const spend = spread.map((s) => ({ ...spendRow(s.request_id), ...s }))
    const records = spread.map((s) => ({ ...recordRow(s.request_id), ...s }))
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
