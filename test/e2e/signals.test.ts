import { afterAll, expect, test } from 'bun:test'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { ROOT } from '../helpers/process.ts'

/**
 * `conduit --workers 2` is a primary and two worker processes. Whatever signal reaches the primary, at
 * whatever moment of its start-up or run, no process of that run may live on: each run gets its own data
 * folder, and /proc tells which processes still carry it in their environment.
 */
const dirs: string[] = []
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

interface Run {
  proc: ReturnType<typeof Bun.spawn>
  dataDir: string
  /** Resolves with the time from spawn to the "listening" line, or null if the output ended first. */
  listening: Promise<number | null>
}

function start(): Run {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-signals-'))
  dirs.push(dataDir)
  const started = performance.now()
  const proc = Bun.spawn(['bun', 'src/main.ts', '--workers', '2'], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH!,
      HOME: process.env.HOME ?? '/root',
      PORT: '0',
      HOST: '127.0.0.1',
      CONDUIT_DATA_DIR: dataDir,
      CONDUIT_MASTER_KEY: 'signals-test-master-key-0123456789',
      CONDUIT_LOG_LEVEL: 'silent',
    },
    stdout: 'pipe',
    stderr: 'ignore',
  })
  const listening = (async () => {
    let output = ''
    for await (const chunk of proc.stdout) {
      output += new TextDecoder().decode(chunk)
      if (output.includes('listening on')) return performance.now() - started
    }
    return null
  })()
  return { proc, dataDir, listening }
}

/** Pids of the live processes started for this data folder (a zombie's environment reads as empty). */
function processesOf(dataDir: string): number[] {
  const marker = `CONDUIT_DATA_DIR=${dataDir}\0`
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/environ`, 'latin1').includes(marker)
      } catch {
        return false // gone meanwhile, or not ours
      }
    })
    .map(Number)
}

/** Waits up to `ms` for every process of the run to be gone; returns the ones still there. */
async function leftAfter(dataDir: string, ms: number): Promise<number[]> {
  const deadline = performance.now() + ms
  let left = processesOf(dataDir)
  while (left.length > 0 && performance.now() < deadline) {
    await Bun.sleep(25)
    left = processesOf(dataDir)
  }
  return left
}

const exitWithin = (proc: Run['proc'], ms: number) => Promise.race([proc.exited.then(() => true), Bun.sleep(ms).then(() => false)])

/** Kills whatever a failed trial left, so one failure does not leak processes into the next tests. */
function cleanUp(dataDir: string) {
  for (const pid of processesOf(dataDir)) process.kill(pid, 'SIGKILL')
}

/** How long a start-up takes on this machine right now: the trials spread their signals over it. */
async function startUpTime() {
  const run = start()
  const ms = await run.listening
  run.proc.kill('SIGTERM')
  await run.proc.exited
  if (ms === null) throw new Error('the gateway did not start')
  return ms
}

test('SIGTERM, SIGINT or SIGHUP at any moment from spawn to listening: the primary exits promptly and no process remains', async () => {
  const span = (await startUpTime()) * 1.3
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const
  const trials = 21
  const failures: string[] = []
  for (let i = 0; i < trials; i++) {
    // Evenly over the start-up and a little past it, with jitter so the moments do not repeat run to run.
    const delay = Math.max(0, (i / (trials - 1)) * span + (Math.random() - 0.5) * 20)
    const signal = signals[i % signals.length]!
    const run = start()
    await Bun.sleep(delay)
    run.proc.kill(signal)
    const exited = await exitWithin(run.proc, 5_000)
    const left = await leftAfter(run.dataDir, 500)
    if (!exited || left.length > 0) failures.push(`${signal} at ${Math.round(delay)} ms: primary exited ${exited}, left ${left.join(', ') || 'none'}`)
    cleanUp(run.dataDir)
    run.proc.kill('SIGKILL')
  }
  expect(failures).toEqual([])
}, 60_000)

test('SIGKILL of the primary, during start-up or while serving: its workers notice and are gone within 2 s', async () => {
  const span = (await startUpTime()) * 1.3
  const failures: string[] = []
  const trials = 8
  for (let i = 0; i < trials; i++) {
    // The last trial kills a primary that has been listening for a while.
    const run = start()
    const delay = i === trials - 1 ? ((await run.listening) ?? 0) + 300 : (i / (trials - 2)) * span
    if (i < trials - 1) await Bun.sleep(delay)
    run.proc.kill('SIGKILL')
    await run.proc.exited
    const left = await leftAfter(run.dataDir, 2_000)
    if (left.length > 0) failures.push(`SIGKILL at ${Math.round(delay)} ms: left ${left.join(', ')}`)
    cleanUp(run.dataDir)
  }
  expect(failures).toEqual([])
}, 60_000)
