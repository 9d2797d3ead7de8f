import { afterAll, beforeAll, expect, test } from 'bun:test'
import { Database } from 'bun:sqlite'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startFakeOpenAI, type FakeOpenAI } from './helpers/fake-openai.ts'
import { ROOT, startProcess, stopProcess } from './helpers/process.ts'

/**
 * Smoke test of the deliverable: `bun run build` produces dist/conduit, which runs the gateway from a folder
 * holding nothing of the project, loads an external plugin named in its config, serves a chat request, records
 * it in the ledger and the request records, and shuts down cleanly on SIGTERM.
 */
const binary = path.join(ROOT, 'dist/conduit')
let work: string
let fake: FakeOpenAI

beforeAll(async () => {
  const build = Bun.spawnSync(['bun', 'run', 'build'], { cwd: ROOT, stdout: 'pipe', stderr: 'pipe' })
  expect(build.exitCode).toBe(0)
  expect(existsSync(binary)).toBe(true)
  const plugin = Bun.spawnSync(['bun', 'run', 'build'], { cwd: path.join(ROOT, 'plugins/redact-email'), stderr: 'pipe' })
  expect(plugin.exitCode).toBe(0)

  work = mkdtempSync(path.join(tmpdir(), 'conduit-binary-'))
  await Bun.write(path.join(work, 'plugins/redact-email.js'), Bun.file(path.join(ROOT, 'plugins/redact-email/dist/redact-email.js')))
  // Traps: a compiled binary must not autoload either of these from its working directory.
  await Bun.write(path.join(work, 'bunfig.toml'), 'preload = ["./trap.ts"]\n')
  await Bun.write(path.join(work, 'trap.ts'), 'console.log("TRAP: bunfig preload ran")\n')
  await Bun.write(path.join(work, '.env'), 'CONDUIT_LOG_LEVEL=debug\nTRAP_FROM_DOTENV=1\n')
  fake = await startFakeOpenAI()
  await Bun.write(
    path.join(work, 'conduit.yaml'),
    `plugins:
  - use: ./plugins/redact-email.js
providers:
  - { name: fake, type: openai, base_url: "${fake.url}", api_key: sk-upstream-test }
models:
  - { name: m, targets: [{ provider: fake, model: gpt-4o }] }
keys:
  - { name: smoke }
`,
  )
}, 60_000)

afterAll(() => {
  fake?.stop()
  if (work) rmSync(work, { recursive: true, force: true })
})

for (const workers of ['1', '2']) {
  test(`dist/conduit with ${workers} worker(s): start, a chat request through an external plugin, clean SIGTERM`, async () => {
    const started = performance.now()
    const dataDir = path.join(work, `data-${workers}`)
    const gw = await startProcess({ CONDUIT_DATA_DIR: dataDir }, ['--config', 'conduit.yaml', '--workers', workers], [binary], work)
    const startupMs = performance.now() - started
    expect(gw.output).not.toContain('TRAP')
    const key = /Virtual key 'smoke' created from the config \(shown once\): (\S+)/.exec(gw.output)?.[1]
    expect(key).toBeDefined()

    const res = await fetch(`${gw.origin}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'reach me at jane@example.com' }] }),
    })
    expect(res.status).toBe(200)
    expect(((await res.json()) as any).model).toBe('m')
    expect(res.headers.get('x-conduit-redacted-emails')).toBe('1')
    expect(fake.requests.at(-1)!.body.messages[0].content).toBe('reach me at [email redacted]')

    expect(await stopProcess(gw.proc)).toBe(0)
    const stderr = await new Response(gw.proc.stderr as ReadableStream).text()
    expect(stderr).not.toContain('TRAP')
    const db = new Database(path.join(dataDir, 'conduit.sqlite'), { readonly: true })
    expect(db.query('SELECT model, status FROM spend_ledger').all()).toEqual([{ model: 'm', status: 200 }])
    expect(db.query('SELECT COUNT(*) AS n FROM request_records').get()).toEqual({ n: 1 })
    db.close()
    console.log(`dist/conduit (${workers} worker): ready in ${startupMs.toFixed(0)} ms, ${(Bun.file(binary).size / 2 ** 20).toFixed(1)} MiB`)
  }, 30_000)
}
