/**
 * A/B of two checkouts' request pipelines, in one process, interleaved: for the gateway's own small costs.
 *
 *   git worktree add /tmp/before <rev> && ln -s "$PWD/node_modules" /tmp/before/node_modules
 *   bun bench/ab.ts /tmp/before [checkout B, default this one] [--rounds 10] [--seconds 1] \
 *     [--a-config '{…}'] [--b-config '{…}'] [--key '{…}'] > /dev/null
 *
 * `bun run bench` compares whole processes a minute apart, and this box's speed drifts more than that between
 * runs (one arm measured 31–59% of the floor); a change worth 3% is lost in it. Here both gateways (each its own
 * store, plugins, row-writer thread) live in one process and take turns, a second each, so a drift hits both
 * alike, and what is compared is CPU per request within a round. Each calls its own `pipeline.handle` for a chat
 * completion at c=64 against the mock upstream (another process): Bun's HTTP server, the same code for both, is
 * left out. `--a-config` / `--b-config` merge into a side's gateway config, so one checkout against itself with a
 * capability switched off measures what it costs; `--key` is the key's policy on both sides (`{"rpm": …}`). The
 * gateways' request lines go to stdout as a server's would (send them to /dev/null); the result is on stderr.
 */
import { parseArgs } from 'node:util'
import path from 'node:path'
import { startMock } from './arms.ts'
import { median } from './stats.ts'

const { values: args, positionals } = parseArgs({
  args: process.argv.slice(2),
  allowPositionals: true,
  options: {
    rounds: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '1' },
    'a-config': { type: 'string', default: '{}' },
    'b-config': { type: 'string', default: '{}' },
    key: { type: 'string', default: '{}' },
  },
})
const here = path.resolve(import.meta.dir, '..')
const [checkoutA, checkoutB = here] = positionals.map((p) => path.resolve(p))
if (!checkoutA) throw new Error('usage: bun bench/ab.ts <checkout A> [checkout B] [--rounds N] [--seconds S] [--a-config JSON] [--b-config JSON] [--key JSON]')
const rounds = Number(args.rounds)
const roundMs = Number(args.seconds) * 1000
const CONNECTIONS = 64

// Read by each checkout's test helper and logger: the mock is on loopback, and the request log writes its lines.
process.env.CONDUIT_EGRESS_ALLOW ??= '127.0.0.1'
process.env.CONDUIT_LOG_LEVEL ??= 'info'

const mock = await startMock()
const upstream = mock.url

interface Side {
  name: string
  one(): Promise<void>
  close(): Promise<void>
}

/** A gateway as the checkout's own test helper starts it (request records on, as by default), with a key and a model. */
async function side(name: string, checkout: string, config: Record<string, unknown>): Promise<Side> {
  const { startGateway } = await import(path.join(checkout, 'test/helpers/gateway.ts'))
  const gw = await startGateway({ requestLog: { retentionDays: 7, recordBodies: false }, ...config })
  await gw.admin('POST', '/providers', { name: 'mock', type: 'openai', base_url: upstream, api_key: 'sk-bench-mock' })
  await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'mock', model: 'gpt-4o-mini', price: { input: 1, output: 1 } }] })
  const { key } = await gw.admin('POST', '/keys', { name: 'ab', ...JSON.parse(args.key!) })
  const url = `${gw.origin}/v1/chat/completions`
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` }
  const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'Hello there, how are you?' }], max_tokens: 16 })
  return {
    name: `${name} ${checkout}`,
    async one() {
      const res: Response = await gw.gateway.pipeline.handle('chat', new Request(url, { method: 'POST', headers, body }))
      await res.text()
      if (res.status !== 200) throw new Error(`${name}: HTTP ${res.status}`)
    },
    close: () => gw.close(),
  }
}

/** One side for `ms` at c=64: requests done, CPU µs per request (every thread of the process), req/s. */
async function run(s: Side, ms: number) {
  const end = performance.now() + ms
  let requests = 0
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < end) {
        await s.one()
        requests++
      }
    }),
  )
  const cpu = process.cpuUsage(cpu0)
  return { cpuUs: (cpu.user + cpu.system) / requests, rps: (requests * 1000) / (performance.now() - t0) }
}

try {
  const sides = [await side('A', checkoutA, JSON.parse(args['a-config']!)), await side('B', checkoutB, JSON.parse(args['b-config']!))]
  for (const s of sides) await run(s, 1500) // the JIT settles
  const cpu: number[][] = [[], []]
  const rps: number[][] = [[], []]
  for (let r = 0; r < rounds; r++) {
    for (const i of r % 2 ? [1, 0] : [0, 1]) {
      const x = await run(sides[i]!, roundMs)
      cpu[i]!.push(x.cpuUs)
      rps[i]!.push(x.rps)
    }
  }
  const ratios = cpu[1]!.map((b, r) => b / cpu[0]![r]!)
  for (const [i, s] of sides.entries()) {
    console.error(`${s.name}: CPU ${median(cpu[i]!).toFixed(1)} µs/request (rounds ${cpu[i]!.map((x) => x.toFixed(0)).join(' ')}), ${median(rps[i]!).toFixed(0)} req/s`)
  }
  console.error(`B/A, CPU per request within a round: median ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}, ${rounds} rounds)`)
  for (const s of sides) await s.close()
} finally {
  await mock.process.stop()
}
process.exit(0)
