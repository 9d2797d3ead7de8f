/**
 * soak (--long): a fresh Conduit under steady mixed load (JSON + streams, 10 % of the streams aborted by the
 * client mid-stream) for a fixed time. RSS of its process tree every second; growth = slope of a linear fit
 * over the second half of the run, in MiB/min. Then 10 s without load, to see what is given back.
 */
import path from 'node:path'
import type { Arm } from '../arms.ts'
import { chatBody } from '../clients/http.ts'
import type { SoakClientConfig, SoakClientResult } from '../clients/soak.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { linearFit, max } from '../stats.ts'
import { benchDir, MiB, processTree, rssBytes, RssSampler } from '../sys.ts'

export interface SoakOptions {
  durationSec: number
  jsonPerSec: number
  streamsPerSec: number
  abortRatio: number
  json: MockTiming
  stream: MockTiming
}

export interface SoakResult {
  arm: string
  durationSec: number
  jsonPerSec: number
  streamsPerSec: number
  abortRatio: number
  client: SoakClientResult | null
  clientError: string | null
  rssIdle: number
  rssPeak: number
  rssEnd: number
  rssRecovered: number
  /** MiB per minute over the second half. */
  growthMiBPerMin: number
  /** Every sample: seconds since the load started, bytes. */
  samples: { t: number; rss: number }[]
}

export async function runSoak(arm: Arm, o: SoakOptions, progress: (m: string) => void): Promise<SoakResult> {
  const root = arm.process!.pid
  const rssIdle = rssBytes(processTree(root))
  const config: SoakClientConfig = {
    target: { url: `${arm.baseURL}/chat/completions`, headers: arm.headers },
    jsonBody: chatBody(mockModel(o.json), false),
    streamBody: chatBody(mockModel(o.stream), true),
    jsonPerSec: o.jsonPerSec,
    streamsPerSec: o.streamsPerSec,
    abortRatio: o.abortRatio,
    chunks: o.stream.chunks,
    durationSec: o.durationSec,
    maxInFlight: 4000,
  }
  const sampler = new RssSampler(root, 1000)
  const proc = Bun.spawn(['bun', path.join(benchDir, 'clients/soak.ts'), JSON.stringify(config)], {
    env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: '65535' },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const killer = setTimeout(() => proc.kill('SIGKILL'), (o.durationSec + 120) * 1000)
  const ticker = setInterval(() => {
    const last = sampler.samples.at(-1)
    if (last) progress(`soak: ${Math.round(last.t)}/${o.durationSec} s, RSS ${(last.rss / MiB).toFixed(1)} MiB`)
  }, 60_000)
  const [out, err] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()])
  await proc.exited
  clearTimeout(killer)
  clearInterval(ticker)
  const samples = sampler.stop()
  await Bun.sleep(10_000)
  const rssRecovered = rssBytes(processTree(root))

  let client: SoakClientResult | null = null
  let clientError: string | null = null
  try {
    client = JSON.parse(out) as SoakClientResult
  } catch {
    clientError = (err || out).slice(-1000) || `exit ${proc.exitCode}`
  }
  const loaded = samples.filter((s) => s.t <= o.durationSec)
  const secondHalf = loaded.filter((s) => s.t >= o.durationSec / 2)
  const fit = linearFit(
    secondHalf.map((s) => s.t),
    secondHalf.map((s) => s.rss),
  )
  return {
    arm: arm.name,
    durationSec: o.durationSec,
    jsonPerSec: o.jsonPerSec,
    streamsPerSec: o.streamsPerSec,
    abortRatio: o.abortRatio,
    client,
    clientError,
    rssIdle,
    rssPeak: max(samples.map((s) => s.rss)),
    rssEnd: loaded.at(-1)?.rss ?? NaN,
    rssRecovered,
    growthMiBPerMin: (fit.slope * 60) / MiB,
    samples,
  }
}
