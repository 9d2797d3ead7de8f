/**
 * streams-1000: N simultaneous streams (mock: 20 chunks × 100 ms) per arm, opened by a separate Bun client
 * process with BUN_CONFIG_MAX_HTTP_REQUESTS=65535. Pass: every stream completes and no gap between chunks
 * exceeds the mock interval by more than 100 ms. The arm's RSS is sampled every 250 ms; the peak minus the
 * RSS just before gives the memory per open stream.
 */
import path from 'node:path'
import type { Arm } from '../arms.ts'
import { chatBody } from '../clients/http.ts'
import type { StreamsClientConfig, StreamsClientResult } from '../clients/streams.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { benchDir, processTree, rssBytes, RssSampler } from '../sys.ts'

export interface StreamsOptions {
  count: number
  timing: MockTiming
}

export interface StreamsArmResult extends StreamsClientResult {
  arm: string
  pass: boolean
  rssBefore: number | null
  rssPeak: number | null
  /** (peak − before) / count, bytes. */
  rssPerStream: number | null
  clientError: string | null
}

export interface StreamsResult {
  count: number
  timing: MockTiming
  arms: StreamsArmResult[]
}

export async function runStreamsClient(arm: Arm, count: number, timing: MockTiming): Promise<StreamsClientResult & { clientError: string | null }> {
  const config: StreamsClientConfig = {
    target: { url: `${arm.baseURL}/chat/completions`, headers: arm.headers },
    body: chatBody(mockModel(timing), true),
    count,
    chunks: timing.chunks,
    intervalMs: timing.intervalMs,
    timeoutMs: 60_000,
  }
  const proc = Bun.spawn(['bun', path.join(benchDir, 'clients/streams.ts'), JSON.stringify(config)], {
    env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: '65535' },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const killer = setTimeout(() => proc.kill('SIGKILL'), 90_000)
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()])
  await proc.exited
  clearTimeout(killer)
  try {
    return { ...(JSON.parse(out) as StreamsClientResult), clientError: null }
  } catch {
    const nan = { p50: NaN, p99: NaN, max: NaN }
    return { count, completed: 0, failed: count, errors: [], ttftMs: nan, maxStallMs: NaN, stalledStreams: 0, wallMs: NaN, clientError: (err || out).slice(-1000) || `exit ${proc.exitCode}` }
  }
}

export async function runStreams(arms: Arm[], o: StreamsOptions, progress: (m: string) => void): Promise<StreamsResult> {
  const results: StreamsArmResult[] = []
  for (const arm of arms) {
    const root = arm.process?.pid ?? null
    const rssBefore = root ? rssBytes(processTree(root)) : null
    const sampler = root ? new RssSampler(root, 250) : null
    const r = await runStreamsClient(arm, o.count, o.timing)
    sampler?.stop()
    const rssPeak = sampler ? sampler.peak : null
    const pass = r.clientError === null && r.completed === o.count && r.stalledStreams === 0
    results.push({
      ...r,
      arm: arm.name,
      pass,
      rssBefore,
      rssPeak,
      rssPerStream: rssBefore !== null && rssPeak !== null ? (rssPeak - rssBefore) / o.count : null,
    })
    progress(`streams-${o.count} ${arm.name}: ${r.completed}/${o.count} complete, TTFT p99 ${r.ttftMs.p99.toFixed(1)} ms, max stall ${r.maxStallMs.toFixed(1)} ms`)
    await Bun.sleep(1000) // let sockets close before the next arm
  }
  return { count: o.count, timing: o.timing, arms: results }
}
