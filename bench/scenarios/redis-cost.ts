/**
 * redis-cost (with --limits): what a governed request costs the Redis it shares with every other instance.
 * Against the governed arm's private Redis, `CONFIG RESETSTAT`, then requests at c=1 (sequential fetch) and at
 * c=64 (wrk), then `INFO commandstats` and `INFO cpu`. Per request: script calls (the round trips Redis sees),
 * their time (`usec` of EVALSHA/EVAL, which includes the commands a script runs) and the Redis process's CPU
 * (user + system: parsing, replies and syscalls too). One Redis core runs about 1e6 / (CPU µs per request)
 * governed requests per second for the whole fleet.
 */
import Redis from 'ioredis'
import type { Arm } from '../arms.ts'
import { chatBody, timedJson } from '../clients/http.ts'
import { mockModel, type MockTiming } from '../mock-upstream.ts'
import { wrk, writeLua } from './throughput.ts'

export interface RedisCostCell {
  arm: string
  concurrency: number
  requests: number
  /** Responses that were not 200 (each still asked Redis). */
  failed: number
  /** EVALSHA + EVAL calls ÷ requests. */
  scriptCallsPerRequest: number
  /** Their `usec` ÷ requests (a script's usec includes the commands it runs). */
  scriptUsPerRequest: number
  /** Every command Redis counted (scripts' inner commands included) ÷ requests. */
  commandsPerRequest: number
  /** Redis process CPU (used_cpu_user + used_cpu_sys) ÷ requests. */
  cpuUsPerRequest: number
  /** Per command: calls and usec per request, for the report's detail line. */
  commands: Record<string, { calls: number; usec: number }>
}

export interface RedisCostResult {
  redisURL: string
  cells: RedisCostCell[]
}

/** Our own probes, not the gateway's. */
const OURS = /^(info|config\|.*|client\|.*|hello|select)$/

async function stats(redis: Redis) {
  const [commandstats, cpu] = await Promise.all([redis.info('commandstats'), redis.info('cpu')])
  const commands: Record<string, { calls: number; usec: number }> = {}
  for (const m of commandstats.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    if (!OURS.test(m[1]!)) commands[m[1]!] = { calls: Number(m[2]), usec: Number(m[3]) }
  }
  const seconds = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(cpu)?.[1] ?? NaN)
  return { commands, cpu: seconds('used_cpu_user') + seconds('used_cpu_sys') }
}

async function measure(arm: Arm, redis: Redis, concurrency: number, load: () => Promise<{ requests: number; failed: number }>): Promise<RedisCostCell> {
  await redis.config('RESETSTAT')
  const before = await stats(redis)
  const { requests, failed } = await load()
  // Settlements leave in batches a few ms after their requests end, and lease renewals every few seconds.
  await Bun.sleep(500)
  const after = await stats(redis)
  const per = (n: number) => (requests > 0 ? n / requests : NaN)
  const scripts = ['evalsha', 'eval', 'evalsha_ro', 'eval_ro', 'fcall'].map((c) => after.commands[c] ?? { calls: 0, usec: 0 })
  const all = Object.values(after.commands)
  return {
    arm: arm.name,
    concurrency,
    requests,
    failed,
    scriptCallsPerRequest: per(scripts.reduce((s, c) => s + c.calls, 0)),
    scriptUsPerRequest: per(scripts.reduce((s, c) => s + c.usec, 0)),
    commandsPerRequest: per(all.reduce((s, c) => s + c.calls, 0)),
    cpuUsPerRequest: per((after.cpu - before.cpu) * 1e6),
    commands: Object.fromEntries(Object.entries(after.commands).map(([name, c]) => [name, { calls: per(c.calls), usec: per(c.usec) }])),
  }
}

export async function runRedisCost(arm: Arm, o: { redisURL: string; requests: number; durationSec: number; timing: MockTiming; workDir: string }, progress: (m: string) => void): Promise<RedisCostResult> {
  const redis = new Redis(o.redisURL, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await redis.connect()
  const body = chatBody(mockModel(o.timing), false)
  const target = { url: `${arm.baseURL}/chat/completions`, headers: arm.headers }
  try {
    const cells: RedisCostCell[] = []
    cells.push(
      await measure(arm, redis, 1, async () => {
        let failed = 0
        for (let i = 0; i < o.requests; i++) if ((await timedJson(target, body)).status !== 200) failed++
        return { requests: o.requests, failed }
      }),
    )
    const lua = writeLua(o.workDir, arm, body)
    cells.push(
      await measure(arm, redis, 64, async () => {
        const r = await wrk(target.url, lua, 64, o.durationSec)
        return { requests: r.requests, failed: r.non2xx }
      }),
    )
    for (const c of cells) {
      progress(`redis-cost ${arm.name} c=${c.concurrency}: ${c.scriptCallsPerRequest.toFixed(2)} script calls, ${c.scriptUsPerRequest.toFixed(1)} µs scripts, ${c.cpuUsPerRequest.toFixed(1)} µs Redis CPU per request`)
    }
    return { redisURL: o.redisURL, cells }
  } finally {
    redis.disconnect()
  }
}
