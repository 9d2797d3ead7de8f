import { expect, test } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ROOT } from '../helpers/process.ts'

/** A run's JSON with only what the history reads: two rounds at c=64, and the report's targets. */
function run(commit: string, argv: string[], floor: [number, number][], conduit: [number, number][]) {
  const cell = (arm: string, round: number, [rps, cpuUsPerReq]: [number, number]) =>
    ({ arm, round, connections: 64, rps, cpuUsPerReq, p50: 1, p99: 2, armCores: 1, mockCpuUsPerReq: 10, non2xx: 0, socketErrors: { connect: 0, read: 0, write: 0, timeout: 0 }, peakRss: null, peakRssProcess: null, timeWaitBefore: 0, timeWait: 0, foreignCores: 0, requests: rps, seconds: 1 })
  return {
    argv,
    machine: { gitCommit: commit + '00000', wake: { warmUs: 10, afterIdleUs: 43 } },
    throughput: { durationSec: 4, ladder: [64], rounds: 2, cells: [...floor.map((f, i) => cell('floor', i + 1, f)), ...conduit.map((c, i) => cell('conduit-w1', i + 1, c))], peakRss: {}, peakRssProcess: {} },
    targets: [
      { target: 'throughput c=64 vs floor', arm: 'conduit-w1', measured: '61% (rounds 59%–63%; median 17780 vs 29289 req/s)' },
      { target: 'added latency c=1, p50', arm: 'conduit-w1', measured: '+0.220 ms' },
      { target: 'RSS idle, per worker', arm: 'conduit-w1', measured: '72.1 MB' },
    ],
  }
}

test('bench history: a line per full run, oldest first, the floor and the CPU ratio from its rounds; partial runs left out', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'conduit-history-'))
  try {
    // The host sped up in round 2: the CPU ratio is each round's, then their median (2.0 and 3.0 → 2.5).
    writeFileSync(path.join(dir, '2026-12-07T09-56-34Z.json'), JSON.stringify(run('bbbbbbb', ['--limits'], [[20_000, 40], [30_000, 20]], [[12_000, 80], [18_000, 60]])))
    writeFileSync(path.join(dir, '2026-12-06T08-00-00Z.json'), JSON.stringify(run('aaaaaaa', [], [[10_000, 50], [10_000, 50]], [[5_000, 100], [5_000, 100]])))
    writeFileSync(path.join(dir, '2026-12-07T10-00-00Z.json'), JSON.stringify(run('ccccccc', ['--only', 'sse'], [], [])))
    writeFileSync(path.join(dir, 'latest.json'), '{}')
    const proc = Bun.spawn(['bun', 'bench/history.ts', dir], { cwd: ROOT, stdout: 'pipe', stderr: 'pipe' })
    const [out, code] = [await new Response(proc.stdout).text(), await proc.exited]
    expect(code).toBe(0)
    const lines = out.trim().split('\n').slice(2)
    expect(lines).toEqual([
      '| 2026-12-06 08:00 | aaaaaaa | 10,000, 50.0 | 4.3× | 61% (100.0 µs, 2.00×) | – | – / – | +0.220 / – | – | – | 72.1 |',
      '| 2026-12-07 09:56 | bbbbbbb | 25,000, 30.0 | 4.3× | 61% (70.0 µs, 2.50×) | – | – / – | +0.220 / – | – | – | 72.1 |',
    ])
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
