import { afterAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { startFakeOpenAI } from './helpers/fake-openai.ts'
import { ROOT as root, startProcess, stopProcess } from './helpers/process.ts'

/** `bun run start` as a new user runs it: a real process, its own data folder, stdout read like a terminal. */
const dirs: string[] = []
const tempDir = () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'conduit-start-'))
  dirs.push(dir)
  return dir
}
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })))

const start = (env: Record<string, string>, args: string[] = []) => startProcess({ CONDUIT_WORKERS: '1', ...env }, args)
const stop = stopProcess

test('first start generates and prints a master key once; only its hash is kept', async () => {
  const dataDir = tempDir()
  const first = await start({ CONDUIT_DATA_DIR: dataDir })
  expect(first.origin).toBeDefined()
  const masterKey = /\n\s+(condt_mk_[0-9A-Za-z]+)\n/.exec(first.output)?.[1]
  expect(masterKey).toBeDefined()
  const keys = await fetch(`${first.origin}/admin/v1/keys`, { headers: { authorization: `Bearer ${masterKey}` } })
  expect(keys.status).toBe(200)
  expect(await stop(first.proc)).toBe(0)

  // The key file is private, and the database never saw the master key itself.
  expect(statSync(path.join(dataDir, 'encryption.key')).mode & 0o777).toBe(0o600)
  // So is the database: it holds conversations, request bodies and sealed secrets.
  for (const file of ['conduit.sqlite', 'conduit.sqlite-wal', 'conduit.sqlite-shm']) {
    const stat = statSync(path.join(dataDir, file), { throwIfNoEntry: false })
    if (stat) expect(`${file} ${(stat.mode & 0o777).toString(8)}`).toBe(`${file} 600`)
  }
  for (const file of ['conduit.sqlite', 'conduit.sqlite-wal']) {
    const f = Bun.file(path.join(dataDir, file))
    if (await f.exists()) expect((await f.text()).includes(masterKey!)).toBe(false)
  }

  const second = await start({ CONDUIT_DATA_DIR: dataDir })
  expect(second.output).not.toContain('condt_mk_')
  expect((await fetch(`${second.origin}/admin/v1/keys`, { headers: { authorization: `Bearer ${masterKey}` } })).status).toBe(200)
  expect((await fetch(`${second.origin}/admin/v1/keys`, { headers: { authorization: 'Bearer guess' } })).status).toBe(401)
  expect(await stop(second.proc)).toBe(0)
}, 30_000)

test('a YAML config with ${ENV} secrets is applied idempotently and serves traffic', async () => {
  const fake = await startFakeOpenAI()
  try {
    const dir = tempDir()
    const file = path.join(dir, 'conduit.yaml')
    await Bun.write(
      file,
      `providers:
  - name: upstream
    type: openai
    base_url: \${UPSTREAM_URL}
    api_key: \${UPSTREAM_KEY}
models:
  - name: my-gpt4
    targets: [{ provider: upstream, model: gpt-4o }]
keys:
  - name: ci
    allowed_models: ["my-*"]
`,
    )
    const env = { CONDUIT_DATA_DIR: path.join(dir, 'data'), CONDUIT_MASTER_KEY: 'master-key-for-the-test', UPSTREAM_URL: fake.url, UPSTREAM_KEY: 'sk-upstream-test' }
    const first = await start(env, ['--config', file])
    const key = /Virtual key 'ci' created from the config \(shown once\): (condt_\S+)/.exec(first.output)?.[1]
    expect(key).toBeDefined()
    const chat = () =>
      fetch(`${first.origin}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'my-gpt4', messages: [{ role: 'user', content: 'hi' }] }),
      })
    const res = await chat()
    expect(res.status).toBe(200)
    expect(((await res.json()) as any).model).toBe('my-gpt4')
    expect(await stop(first.proc)).toBe(0)

    // Applying the same file again changes nothing: same key, same entities.
    const again = await start(env, ['--config', file])
    expect(again.output).not.toContain('created from the config')
    const providers = (await (await fetch(`${again.origin}/admin/v1/providers`, { headers: { authorization: 'Bearer master-key-for-the-test' } })).json()) as any
    expect(providers.data.length).toBe(1)
    expect(JSON.stringify(providers)).not.toContain('sk-upstream-test')
    expect(await stop(again.proc)).toBe(0)

    // A wrong encryption key refuses to start instead of failing later.
    const wrong = Bun.spawnSync(['bun', 'run', 'start', '--config', file], {
      cwd: root,
      env: { ...env, PATH: process.env.PATH!, PORT: '0', CONDUIT_ENCRYPTION_KEY: 'a-different-key' },
      stderr: 'pipe',
    })
    expect(wrong.exitCode).not.toBe(0)
    expect(wrong.stderr.toString()).toContain('encryption key does not match')
  } finally {
    fake.stop()
  }
}, 30_000)
