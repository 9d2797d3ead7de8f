/**
 * Load an arm until its JIT has settled, before anything of it is measured. A freshly started Bun process keeps
 * compiling for seconds under load, and JSC throws away and recompiles optimized code at its first full
 * collections: on a 2-core box a governed Conduit worker's JIT thread used 36% of a core in its first 2 s at c=64,
 * 13% in its third and mostly under 3% from its seventh, when it served a third more requests a second than in the
 * first. A server is judged running, not starting: each arm gets wrk (c=32) in 2-s slices until a slice's JIT CPU is
 * under 3% of a core (at least two slices, at most 30 s), and how long that took is reported with the arm.
 *
 *   bun bench/settle.ts <pid> <lua> <url>   (bench/profile.sh's warm-up)
 */
import { jitCpuSeconds, processTree } from './sys.ts'

const SLICE_SEC = 2
const QUIET_CORES = 0.03
const MIN_SLICES = 2
const MAX_SEC = 30

export interface Settled {
  seconds: number
  /** The JIT's cores during the last slice. */
  jitCores: number
  settled: boolean
}

export async function settle(pid: number, lua: string, url: string): Promise<Settled> {
  let seconds = 0
  let jitCores = NaN
  for (let slice = 1; seconds < MAX_SEC; slice++) {
    const tree = processTree(pid)
    const jit0 = jitCpuSeconds(tree)
    const started = performance.now()
    const wrk = Bun.spawn(['wrk', '-t1', '-c32', `-d${SLICE_SEC}s`, '--timeout', '5s', '-s', lua, url], { stdout: 'ignore', stderr: 'ignore' })
    await wrk.exited
    const elapsed = (performance.now() - started) / 1000
    seconds += elapsed
    // Workers may have been restarted meanwhile: count the tree as it is now, too.
    jitCores = (jitCpuSeconds([...new Set([...tree, ...processTree(pid)])]) - jit0) / elapsed
    if (slice >= MIN_SLICES && jitCores < QUIET_CORES) return { seconds, jitCores, settled: true }
  }
  return { seconds, jitCores, settled: false }
}

if (import.meta.main) {
  const [pid, lua, url] = process.argv.slice(2)
  if (!pid || !lua || !url) throw new Error('usage: bun bench/settle.ts <pid> <lua> <url>')
  const s = await settle(Number(pid), lua, url)
  console.log(`warmed ${s.seconds.toFixed(0)} s: JIT ${(s.jitCores * 100).toFixed(1)}% of a core in the last ${SLICE_SEC} s${s.settled ? '' : ' (not settled)'}`)
}
