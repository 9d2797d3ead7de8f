import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import OpenAI from 'openai'
import { loadConfig } from '../../../src/config/config.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../../../test/helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../../../test/helpers/gateway.ts'

/**
 * The plugin as a third party ships it: bundled on its own with the SDK left external, then loaded by path
 * from a YAML config, exactly as an operator would.
 */
let work: string
let fake: FakeOpenAI
let gw: TestGateway

beforeAll(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'redact-email-'))
  const build = Bun.spawnSync(['bun', 'run', 'build'], { cwd: path.resolve(import.meta.dir, '..'), stderr: 'pipe' })
  expect(build.exitCode).toBe(0)
  const bundle = await Bun.file(path.resolve(import.meta.dir, '../dist/redact-email.js')).text()
  // The SDK stays external: the host provides its own copy at load time.
  expect(bundle).toContain('@conduit/plugin-sdk')
  await Bun.write(path.join(work, 'redact-email.js'), bundle)

  fake = await startFakeOpenAI()
  await Bun.write(
    path.join(work, 'conduit.yaml'),
    [
      'plugins:',
      '  - use: ./redact-email.js',
      '    config: { replacement: "[email]" }',
      'providers:',
      '  - { name: fake, type: openai, base_url: "${FAKE_URL}", api_key: "${FAKE_KEY}" }',
      'models:',
      '  - { name: m, targets: [{ provider: fake, model: gpt-4o }] }',
    ].join('\n'),
  )
  const config = await loadConfig(['--config', path.join(work, 'conduit.yaml')], { FAKE_URL: fake.url, FAKE_KEY: 'sk-upstream-test' })
  gw = await startGateway({ plugins: config.plugins, configDir: config.configDir, seed: config.seed })
})

afterAll(async () => {
  await gw.close()
  fake.stop()
  rmSync(work, { recursive: true, force: true })
})

test('e-mail addresses never reach the provider, and the client is told how many were redacted', async () => {
  const key = (await gw.admin('POST', '/keys', { name: 'k' })).key
  const client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
  const { response } = await client.chat.completions
    .create({
      model: 'm',
      messages: [
        { role: 'system', content: 'Support bot for ops@example.com.' },
        { role: 'user', content: [{ type: 'text', text: 'Mail jane.doe+tag@corp.example.org or bob@x.io' }] },
      ],
    })
    .withResponse()
  expect(response.headers.get('x-conduit-redacted-emails')).toBe('3')
  const sent = JSON.stringify(fake.requests.at(-1)!.body.messages)
  expect(sent).not.toMatch(/@(example|corp|x)\./)
  expect(sent).toContain('Support bot for [email].')
  expect(sent).toContain('Mail [email] or [email]')

  await client.embeddings.create({ model: 'm', input: ['write to a@b.co'], encoding_format: 'float' })
  expect(fake.requests.at(-1)!.body.input).toEqual(['write to [email]'])
})

test('requests without addresses pass untouched', async () => {
  const key = (await gw.admin('POST', '/keys', { name: 'k2' })).key
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'no addresses here' }] }),
  })
  expect(res.status).toBe(200)
  expect(res.headers.get('x-conduit-redacted-emails')).toBeNull()
  expect(fake.requests.at(-1)!.body.messages[0].content).toBe('no addresses here')
})
