/**
 * Every full run kept in bench/results, oldest first, as one Markdown table of its headline figures: the floor's speed
 * (which moves with the host far more than the code moves Conduit) and Conduit's against it. Partial runs (`--only`)
 * are left out.
 *
 *   bun bench/history.ts [results dir]
 */
import { readdirSync } from 'node:fs'
import path from 'node:path'
import { summarizeThroughput, type ThroughputResult } from './scenarios/throughput.ts'

type Target = { target: string; arm: string; measured: string }
type Run = {
  argv: string[]
  machine: { gitCommit: string; wake?: { warmUs: number; afterIdleUs: number } }
  throughput?: ThroughputResult
  targets: Target[]
}

const dir = process.argv[2] ?? path.join(import.meta.dir, 'results')
const files = readdirSync(dir).filter((name) => /^\d{4}-\d\d-\d\dT[\d-]+Z\.json$/.test(name)).sort()

/** The measured figure's leading number, with its sign or `%` (`61%`, `+0.220`), or – when the run lacks it. */
function figure(run: Run, target: string, arm: string): string {
  const found = run.targets.find((t) => t.arm === arm && (t.target === target || t.target === `${target}, per worker`))
  return found?.measured.match(/^[+-]?[\d.]+%?/)?.[0] ?? '–'
}

const rows = [
  '| run (UTC) | commit | floor c=64: req/s, CPU µs a request | wake | 1 worker vs floor (its CPU a request, × the floor) | 2 workers | limits in-process / Redis | c=1 added p50 / p99 ms | SSE added TTFT ms | 1,000 streams TTFT p99 ms | idle RSS a worker MB |',
  '|---|---|---|---|---|---|---|---|---|---|---|',
]
for (const file of files) {
  const run = (await Bun.file(path.join(dir, file)).json()) as Run
  if (run.argv.includes('--only')) continue
  const at64 = run.throughput ? summarizeThroughput(run.throughput).filter((s) => s.connections === 64) : []
  const floor = at64.find((s) => s.arm === 'floor')
  const floorText = floor ? `${Math.round(floor.rps).toLocaleString('en')}, ${floor.cpuUsPerReq?.toFixed(1) ?? '–'}` : '–'
  const conduit = at64.find((s) => s.arm === 'conduit-w1')
  const conduitCpu = conduit?.cpuUsPerReq && conduit.cpuVsFloor ? ` (${conduit.cpuUsPerReq.toFixed(1)} µs, ${conduit.cpuVsFloor.median.toFixed(2)}×)` : ''
  const wake = run.machine.wake ? `${(run.machine.wake.afterIdleUs / run.machine.wake.warmUs).toFixed(1)}×` : '–'
  const share = (arm: string) => figure(run, 'throughput c=64 vs floor', arm)
  rows.push(
    `| ${file.slice(0, 16).replace(/T(\d\d)-(\d\d)/, ' $1:$2')} | ${run.machine.gitCommit.slice(0, 7)} | ${floorText} | ${wake} | ${share('conduit-w1')}${conduitCpu} | ${share('conduit-w2')} | ` +
      `${share('conduit-w1-limits-local')} / ${share('conduit-w1-limits-redis')} | ${figure(run, 'added latency c=1, p50', 'conduit-w1')} / ` +
      `${figure(run, 'added latency c=1, p99', 'conduit-w1')} | ${figure(run, 'SSE added TTFT p50', 'conduit-w1')} | ` +
      `${figure(run, '1000 streams: first chunk without queueing, TTFT p99', 'conduit-w1')} | ${figure(run, 'RSS idle', 'conduit-w1')} |`,
  )
}
console.log(rows.join('\n'))
