/**
 * One gateway process's store, for tests of several processes on one SQLite file (a cluster's workers): opens the
 * store in the data directory given, writes ledger rows and request records in batches of 200 for the time given
 * (none for 0), and prints what happened as one JSON line.
 * Usage: bun test/helpers/sqlite-process.ts <dataDir> <tag> <ms>
 */
import { Store } from '../../src/store/store.ts'
import { recordRow, spendRow } from './ledger-rows.ts'

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
    for (const result of await Promise.allSettled([store.insertSpend(ids.map((id) => spendRow(id, at))), store.insertRequestRecords(ids.map((id) => recordRow(id, at)))])) {
      if (result.status === 'rejected') report.refused.push(String(result.reason?.message ?? result.reason))
    }
    report.written += ids.length
  }
  await store.close()
} catch (error) {
  report.refused.push(String((error as Error)?.message ?? error))
}
console.log(JSON.stringify(report))
