/**
 * The GOVERN script's cost inside Redis in instructions, which, unlike the µs of `INFO commandstats`, do not move with
 * what else the machine is doing: a private redis-server runs under valgrind's callgrind, and each shape of call is
 * counted over a few hundred calls, as the gateway makes them (the bench key's claim: rpm, tpm, max_parallel and a
 * budget; each call settles the last batch and admits the next).
 *
 *   bun bench/redis-script-cost.ts [checkout …]     # default: this checkout; name others (a worktree) to compare
 *
 * Batches of 1 are c=1 (one admission a call); batches of 18 are what c=64 sends (about 18 admissions a call in the
 * bench). Needs valgrind and redis-server.
 *
 * REDIS_SERVER=<path> runs another redis-server. Debian's has no symbols, so callgrind sees only an address inside
 * `lua_pcall`; one built from the same source (Debian's redis_7.0.15 orig tarball, `make`; about a minute here)
 * names Lua's own functions: `callgrind_annotate` on the dump the last line names shows where a call's instructions go.
 */
import Redis from 'ioredis'
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { repoRoot } from './sys.ts'

const CALLS = 500
const BATCHES = [1, 18]

const checkouts = process.argv.length > 2 ? process.argv.slice(2).map((c) => path.resolve(c)) : [repoRoot]
const dir = mkdtempSync(path.join(tmpdir(), 'conduit-script-cost-'))
const port = 20_000 + Math.floor(Math.random() * 20_000)
const server = Bun.spawn(['valgrind', '--tool=callgrind', `--callgrind-out-file=${dir}/cg.%p`, process.env.REDIS_SERVER ?? 'redis-server', '--port', String(port), '--save', '', '--appendonly', 'no'], {
  stdout: 'ignore',
  stderr: 'ignore',
})
const control = (...args: string[]) => {
  const run = Bun.spawnSync(['callgrind_control', ...args, String(server.pid)])
  if (run.exitCode !== 0) throw new Error(`callgrind_control ${args.join(' ')}: ${run.stderr.toString()}`)
}
/** Instructions counted since the last zeroing: callgrind writes each dump to the next cg.<pid>.<n>. */
const dump = () => {
  control('-d')
  const last = readdirSync(dir)
    .map((f) => Number(/^cg\.\d+\.(\d+)$/.exec(f)?.[1]))
    .filter((n) => n > 0)
    .sort((a, b) => b - a)[0]
  const summary = last && /^summary: (\d+)/m.exec(readFileSync(path.join(dir, `cg.${server.pid}.${last}`), 'utf8'))
  if (!summary) throw new Error(`no callgrind dump in ${dir}`)
  return Number(summary[1])
}

const redis = new Redis({ port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
// Refused connections while valgrind starts the server: the loop below retries them.
redis.on('error', () => {})
try {
  for (let tries = 0; ; tries++) {
    try {
      await redis.connect()
      await redis.ping()
      break
    } catch (error) {
      if (tries > 100 || server.exitCode !== null) throw new Error(`redis-server under valgrind did not start: ${error}`)
      await Bun.sleep(100)
    }
  }
  const rows: string[] = []
  for (const checkout of checkouts) {
    const { GOVERN } = await import(path.join(checkout, 'src/plugins/admission/script.ts'))
    const { encodeCall, decodeReply } = await import(path.join(checkout, 'src/plugins/admission/shared.ts'))
    const sha = (await redis.script('LOAD', GOVERN)) as string
    for (const batch of BATCHES) {
      const tag = crypto.randomUUID()
      const scope = { kind: 'key', tag, key: `conduit:gov:{${tag}}:k`, label: 'this key', keyId: tag }
      const claims = [
        {
          scope,
          rates: [
            { rule: 'rpm', unit: 'requests', limit: 100_000_000, periodMs: 60_000, cost: 1 },
            { rule: 'tpm', unit: 'tokens', limit: 1_000_000_000, periodMs: 60_000, cost: 40 },
          ],
          slots: 100_000,
          budget: { limitMicros: 1e12, cost: 50, period: 'm2026-12', since: 0, ttlMs: 40 * 86_400_000 },
        },
      ]
      let seq = 0
      const call = async (admitting: number, loads: Map<string, number> | null) => {
        const settled = { scope, holds: batch, reserved: 50 * batch, spent: 30 * batch, period: 'm2026-12', adjustments: new Map([['tpm', { rule: 'tpm', limit: 1e9, periodMs: 60_000, units: 10 * batch }]]), absolute: null }
        const admissions = Array.from({ length: admitting }, () => ({ claims, shadow: false, loads }))
        const { keys, argv } = encodeCall('bench001', 30_000, { seq: ++seq, deltas: [settled] }, admissions)
        // A checkout from before f8bef42 sends its arguments as one JSON string.
        const argvList = Array.isArray(argv) ? argv : [argv]
        const reply = await redis.callBuffer('EVALSHA', [sha, keys.length, ...keys, ...argvList])
        // A checkout from before the reply was packed answers an array of integers.
        const outcomes = Array.isArray(reply) ? decodeReply(admissions, reply.map(Number)) : decodeReply(admissions, reply as Buffer)
        if (outcomes.some((o: { status: number }) => o.status !== 1)) throw new Error(`not admitted: ${JSON.stringify(outcomes[0])}`)
      }
      await call(1, new Map([[scope.key, 0]]))
      for (let i = 0; i < 50; i++) await call(batch, null)
      control('-z')
      for (let i = 0; i < CALLS; i++) await call(batch, null)
      const perCall = dump() / CALLS
      rows.push(`| ${path.relative(process.cwd(), checkout) || '.'} | ${batch} | ${Math.round(perCall / 1000)}k | ${Math.round(perCall / batch / 1000)}k |`)
      await redis.del(scope.key)
    }
  }
  console.log(['| checkout | admissions a call | instructions a call | a request |', '|---|---|---|---|', ...rows].join('\n'))
  console.log(`callgrind's dumps, one per checkout and batch in this order: ${dir}`)
} finally {
  redis.disconnect()
  server.kill()
}
