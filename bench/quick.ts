/**
 * Quick side-by-side throughput check: the same wrk load (POST chat completion, c=64) against the mock
 * upstream directly, through the bare Bun passthrough (the floor) and through Conduit with auth and request
 * logging on. Usage: bun bench/quick.ts [--duration 10] [--connections 64]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}
const duration = arg('duration', 10)
const connections = arg('connections', 64)
const root = path.resolve(import.meta.dir, '..')
const work = mkdtempSync(path.join(tmpdir(), 'conduit-bench-'))
const children: ReturnType<typeof Bun.spawn>[] = []

/** Starts a process and waits for the line that announces its URL. */
async function spawn(cmd: string[], env: Record<string, string>, pattern: RegExp): Promise<string> {
  const proc = Bun.spawn(cmd, { cwd: root, env: { ...process.env, ...env }, stdout: 'pipe', stderr: 'inherit' })
  children.push(proc)
  const reader = proc.stdout.getReader()
  let out = ''
  while (!pattern.test(out)) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`${cmd.join(' ')} exited: ${out}`)
    out += new TextDecoder().decode(value)
  }
  // Keep draining so a chatty process never blocks on a full pipe.
  void (async () => {
    while (!(await reader.read()).done);
  })()
  return pattern.exec(out)![1]!
}

function wrk(url: string, authorization?: string) {
  const script = path.join(work, `post-${Math.random().toString(36).slice(2)}.lua`)
  writeFileSync(
    script,
    [
      'wrk.method = "POST"',
      `wrk.body = '{"model":"bench","messages":[{"role":"user","content":"Hello, how are you?"}]}'`,
      'wrk.headers["Content-Type"] = "application/json"',
      authorization ? `wrk.headers["Authorization"] = "${authorization}"` : '',
    ].join('\n'),
  )
  const run = Bun.spawnSync(['wrk', '-t1', `-c${connections}`, `-d${duration}s`, '--latency', '-s', script, `${url}/chat/completions`])
  const text = run.stdout.toString()
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN)
  const ms = (p: string) => {
    const m = new RegExp(`${p}%\\s+([\\d.]+)(us|ms|s)`).exec(text)
    return m ? Number(m[1]) * (m[2] === 'us' ? 0.001 : m[2] === 's' ? 1000 : 1) : NaN
  }
  const errors = /Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? '0'
  return { rps, p50: ms('50'), p99: ms('99'), errors: Number(errors) }
}

try {
  const upstream = await spawn(['bun', 'bench/mock-upstream.ts'], {}, /mock upstream on (\S+)/)
  const floor = await spawn(['bun', 'bench/floor.ts'], { UPSTREAM: upstream, BUN_CONFIG_MAX_HTTP_REQUESTS: '4096' }, /floor on (\S+)/)
  const master = 'bench-master-key'
  const gateway = await spawn(
    ['bun', 'src/main.ts'],
    { PORT: '0', HOST: '127.0.0.1', CONDUIT_DATA_DIR: path.join(work, 'data'), CONDUIT_MASTER_KEY: master, BUN_CONFIG_MAX_HTTP_REQUESTS: '4096' },
    /listening on (\S+)\n/,
  )
  const origin = gateway.replace('localhost', '127.0.0.1').replace(/\/v1$/, '')
  const admin = async (p: string, body: unknown) =>
    (await fetch(`${origin}/admin/v1${p}`, { method: 'POST', headers: { authorization: `Bearer ${master}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })).json() as any
  await admin('/providers', { name: 'mock', type: 'openai', base_url: upstream, api_key: 'sk-bench' })
  await admin('/models', { name: 'bench', targets: [{ provider: 'mock', model: 'gpt-4o' }] })
  const key = (await admin('/keys', { name: 'bench' })).key

  // Warm-up, then the arms back to back under the same conditions.
  wrk(upstream)
  const results = {
    direct: wrk(upstream),
    floor: wrk(floor),
    conduit: wrk(`${origin}/v1`, `Bearer ${key}`),
  }
  const rows = Object.entries(results).map(
    ([arm, r]) => `| ${arm} | ${r.rps.toFixed(0)} | ${r.p50.toFixed(2)} | ${r.p99.toFixed(2)} | ${r.errors} | ${((r.rps / results.direct.rps) * 100).toFixed(0)}% | ${((r.rps / results.floor.rps) * 100).toFixed(0)}% |`,
  )
  console.log(`\nwrk -t1 -c${connections} -d${duration}s, POST /v1/chat/completions (non-streaming), ${new Date().toISOString()}\n`)
  console.log('| arm | req/s | p50 ms | p99 ms | non-2xx | vs direct | vs floor |\n|---|---|---|---|---|---|---|')
  console.log(rows.join('\n'))
} finally {
  for (const child of children) child.kill()
  rmSync(work, { recursive: true, force: true })
}
