/**
 * One gateway process's store, for tests of several processes on one SQLite file (a cluster's workers): opens the
 * store in the data directory given, writes ledger rows and request records in batches of 200 for the time given
 * (none for 0), and prints what happened as one JSON line.
 * Usage: bun test/helpers/sqlite-process.ts <dataDir> <tag> <ms>
 */
import type { SpendRow } from '../../src/store/ledger.ts'
import type { RequestRecordRow } from '../../src/store/request-records.ts'
import { Store } from '../../src/store/store.ts'

const [dataDir, tag, ms] = [process.argv[2]!, process.argv[3]!, Number(process.argv[4])]
const report = { opened: false, written: 0, refused: [] as string[] }
try {
  const store = await Store.open({ dataDir })
  report.opened = true
  const end = performance.now() + ms
  let next = 0
  while (performance.now() < end) {
    const ids = Array.from({ length: 200 }, () => `${tag}-${next++}`)
    const at = Date.now()
    const spend: SpendRow[] = ids.map((request_id) => ({
      request_id, key_id: 'k', endpoint: 'chat', model: 'm', provider: 'p', upstream_model: 'm', prompt_tokens: 1, completion_tokens: 1,
      cost_micros: 1, estimated: 0, aborted: 0, status: 200, created_at: at, end_user: null, unpriced: 0, audio_ms: 0, characters: 0, images: 0,
    }))
    const records: RequestRecordRow[] = ids.map((request_id) => ({
      request_id, created_at: at, key_id: 'k', endpoint: 'chat', model: 'm', provider: 'p', upstream_model: 'm', status: 200, error_code: null,
      stream: 0, aborted: 0, attempts: 1, latency_ms: 1, ttft_ms: null, prompt_tokens: 1, completion_tokens: 1, cost_micros: 1, estimated: 0,
      end_user: null, client_ip: null, request_body: null,
    }))
    for (const result of await Promise.allSettled([store.insertSpend(spend), store.insertRequestRecords(records)])) {
      if (result.status === 'rejected') report.refused.push(String(result.reason?.message ?? result.reason))
    }
    report.written += ids.length
  }
  await store.close()
} catch (error) {
  report.refused.push(String((error as Error)?.message ?? error))
}
console.log(JSON.stringify(report))
