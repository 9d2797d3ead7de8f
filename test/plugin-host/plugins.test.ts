import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { definePlugin, GatewayError, openAICompatible, t, type FinishedRequest } from '../../src/plugin-sdk/index.ts'
import { PluginHost, type HostOptions, type PluginSpec } from '../../src/plugin-host/host.ts'
import { createLogger } from '../../src/services/logger.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

/** Plugins are exercised through the real host and a real gateway; nothing is mocked but the upstream. */
let fake: FakeOpenAI
beforeAll(async () => {
  fake = await startFakeOpenAI()
})
afterAll(() => fake.stop())

let gw: TestGateway | null = null
afterEach(async () => {
  await gw?.close()
  gw = null
})

async function gatewayWith(plugins: PluginSpec[]) {
  gw = await startGateway({ plugins })
  await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  const key = (await gw.admin('POST', '/keys', { name: 'k' })).key as string
  const call = (content: string, extra: Record<string, unknown> = {}, apiKey = key) =>
    fetch(`${gw!.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], ...extra }),
    })
  return { call, key }
}

/** A guardrail that edits the body in place: the first message's e-mail addresses become `[email]`. */
const redact = definePlugin({
  name: 'redact',
  version: '1',
  apiVersion: 1,
  setup: () => ({
    onRequestBody(ctx) {
      ctx.body!.messages[0].content = ctx.body!.messages[0].content.replace(/\S+@\S+/g, '[email]')
    },
  }),
})

const host = (options: Partial<HostOptions> = {}) =>
  new PluginHost({ log: createLogger('silent'), store: { findKeyByHash: async () => null, spentMicros: async () => 0, onChange: () => () => {} }, builtins: {}, baseDir: '.', ...options })

describe('plugin host', () => {
  test('refuses a plugin for another API version, and invalid config with the path', async () => {
    const future = { name: 'future', version: '1', apiVersion: 2, setup() {} } as any
    await expect(host().register(future)).rejects.toThrow(/plugin API 2/)
    const strict = definePlugin({ name: 'strict', version: '1', apiVersion: 1, configSchema: t.Object({ rpm: t.Integer({ minimum: 1 }) }), setup() {} })
    await expect(host().register(strict, { config: { rpm: 0 } })).rejects.toThrow(/strict.*\/rpm/)
    // A misspelled setting is refused, at any depth, not ignored for its default; a record takes any name.
    const nested = definePlugin({
      name: 'nested',
      version: '1',
      apiVersion: 1,
      configSchema: t.Object({ limits: t.Optional(t.Array(t.Object({ rpm: t.Integer() }))), labels: t.Optional(t.Record(t.String(), t.String())) }),
      setup() {},
    })
    await expect(host().register(strict, { config: { rpm: 1, rmp: 2 } })).rejects.toThrow("Invalid config for plugin 'strict' at '/rmp': no such setting.")
    await expect(host().register(nested, { config: { limits: [{ rpm: 1 }, { rpm: 2, tpm: 3 }] } })).rejects.toThrow("at '/limits/1/tpm'")
    await host().register(nested, { config: { limits: [{ rpm: 1 }], labels: { anything: 'goes' } } })
    await expect(host().load([{ use: 'plugins/x.js' }])).rejects.toThrow(/must be 'builtin:<name>' or a path/)
    await expect(host().load([{ use: 'builtin:nope' }])).rejects.toThrow(/Unknown builtin/)
  })

  test('a provider registered without a type id is refused at load, naming the plugin; a plugin passed for an adapter says what to do', async () => {
    const acme = openAICompatible({ id: 'acme', baseURL: 'https://api.acme.dev/v1' })
    const wrapper = definePlugin({ name: 'wraps-acme', version: '1.0.0', apiVersion: 1, setup: (api) => api.registerProvider(acme as any) })
    await expect(host().register(wrapper)).rejects.toThrow(
      "Plugin 'wraps-acme' failed to set up: it registered a provider without a type id (lowercase letters, digits, '.', '_', '-'): that is a plugin (openAICompatible() makes one); export it as the module's default instead.",
    )
    const own = host()
    await own.register(acme)
    expect(own.providers.get('acme')?.id).toBe('acme')
  })

  test('a failing hook is logged with the plugin, the error’s kind, message and stack, and nothing else of the error', async () => {
    const lines: string[] = []
    const log = createLogger('info', { write: (line: string) => void lines.push(line) } as any)
    const faulty = definePlugin({
      name: 'faulty',
      version: '1.0.0',
      apiVersion: 1,
      setup: () => ({
        onRequest: () => {
          const error = new TypeError('undefined is not an object') as TypeError & { response?: unknown }
          error.response = { body: 'a provider answer' }
          throw error
        },
      }),
    })
    const own = host({ log })
    await own.register(faulty, { failureMode: 'open' })
    expect(own.run('onRequest', { log } as any)).toBeUndefined()
    const line = JSON.parse(lines.find((l) => l.includes('plugin hook failed'))!)
    expect(line.plugin).toBe('faulty')
    expect(line.err).toMatchObject({ type: 'TypeError', message: 'undefined is not an object' })
    expect(line.err.stack).toContain('plugins.test.ts')
    expect(JSON.stringify(line)).not.toContain('a provider answer')
  })

  test('a setup that throws or never finishes stops the start naming its plugin', async () => {
    const throwing = definePlugin({ name: 'licensed', version: '1.0.0', apiVersion: 1, setup: () => { throw new Error('cannot reach my license server') } })
    await expect(host().register(throwing)).rejects.toThrow("Plugin 'licensed' failed to set up: cannot reach my license server")
    const hanging = definePlugin({ name: 'forever', version: '1.0.0', apiVersion: 1, setup: () => new Promise<never>(() => {}) })
    await expect(host({ setupTimeoutMs: 100 }).register(hanging)).rejects.toThrow("Plugin 'forever' failed to set up: it did not finish within 0.1 s")
    // A module that throws as it is imported: named by its file.
    const dir = mkdtempSync(path.join(tmpdir(), 'conduit-plugin-'))
    writeFileSync(path.join(dir, 'throws.js'), "throw new Error('top-level throw in plugin module')\n")
    await expect(host({ baseDir: dir }).load([{ use: './throws.js' }])).rejects.toThrow(`The plugin module ${path.join(dir, 'throws.js')} failed to load: top-level throw in plugin module`)
  })

  test('onAuth: hooks that answer synchronously are answered without a promise; an async one anywhere in the chain makes it one, in order', async () => {
    const ctx = { log: createLogger('silent') } as any
    const principal = { keyId: 'k1' } as any
    const hook = (name: string, onAuth: () => unknown, failureMode: 'open' | 'closed' = 'closed') => ({ plugin: definePlugin({ name, version: '1', apiVersion: 1, setup: () => ({ onAuth }) as any }), failureMode })
    const hostWith = async (...hooks: ReturnType<typeof hook>[]) => {
      const h = host()
      for (const { plugin, failureMode } of hooks) await h.register(plugin, { failureMode })
      return h
    }
    const seen: string[] = []
    const sync = await hostWith(hook('a', () => void seen.push('a')), hook('b', () => (seen.push('b'), principal)), hook('c', () => void seen.push('c')))
    expect(sync.authenticate(ctx)).toBe(principal) // the value itself: the hot path awaits nothing
    expect(seen).toEqual(['a', 'b'])
    const later = await hostWith(hook('a', () => undefined), hook('b', async () => undefined), hook('c', () => principal))
    const answer = later.authenticate(ctx)
    expect(answer).toBeInstanceOf(Promise)
    expect(await answer).toBe(principal)
    // A failing async hook in `open` mode is skipped; in `closed` mode it refuses, whichever came first.
    const lenient = await hostWith(hook('x', () => Promise.reject(new Error('bug')), 'open'), hook('y', () => principal))
    expect(await lenient.authenticate(ctx)).toBe(principal)
    const strict = await hostWith(hook('x', () => Promise.reject(new Error('bug'))), hook('y', () => principal))
    await expect(strict.authenticate(ctx)).rejects.toMatchObject({ status: 503, code: 'plugin_failure' })
    const throwing = await hostWith(hook('x', () => { throw new Error('bug') }), hook('y', () => principal))
    expect(() => throwing.authenticate(ctx)).toThrow(/'x' plugin failed/)
  })

  test('config defaults are applied before setup', async () => {
    let seen: unknown
    const p = definePlugin({ name: 'defaults', version: '1', apiVersion: 1, configSchema: t.Object({ level: t.String({ default: 'x' }) }), setup: (api) => void (seen = api.config) })
    await host().register(p)
    expect(seen).toEqual({ level: 'x' })
  })
})

describe('hooks through the gateway', () => {
  test('request-side hooks run by descending priority, response-side in reverse', async () => {
    const order: string[] = []
    const make = (name: string, priority: number) =>
      definePlugin({
        name,
        version: '1',
        apiVersion: 1,
        priority,
        setup: () => ({
          onAccess: () => void order.push(`${name}:access`),
          onRequestBody: () => void order.push(`${name}:body`),
          onResponse: () => void order.push(`${name}:response`),
        }),
      })
    const { call } = await gatewayWith([{ use: make('low', 1) }, { use: make('high', 10) }])
    expect((await call('hi')).status).toBe(200)
    expect(order).toEqual(['high:access', 'low:access', 'high:body', 'low:body', 'low:response', 'high:response'])
  })

  test('a hook refuses with GatewayError or answers with its own Response', async () => {
    const guard = definePlugin({
      name: 'guard',
      version: '1',
      apiVersion: 1,
      setup: () => ({
        onRequestBody(ctx) {
          const text = JSON.stringify(ctx.body?.messages)
          if (text.includes('forbidden')) throw new GatewayError(400, 'Blocked by policy.', { code: 'content_policy' })
          if (text.includes('canned')) return Response.json({ canned: true })
        },
      }),
    })
    const { call } = await gatewayWith([{ use: guard }])
    const before = fake.requests.length
    const refused = await call('forbidden words')
    expect(refused.status).toBe(400)
    expect(((await refused.json()) as any).error.code).toBe('content_policy')
    expect(await (await call('canned please')).json()).toEqual({ canned: true })
    expect(fake.requests.length).toBe(before)
  })

  test('an onRequestBody hook edits the body in place, and the provider gets the edit', async () => {
    const { call } = await gatewayWith([{ use: redact }])
    expect((await call('mail me at ada@example.com')).status).toBe(200)
    expect(fake.requests.at(-1)!.body.messages[0].content).toBe('mail me at [email]')
    expect(fake.requests.at(-1)!.text).not.toContain('ada@example.com')
  })

  test('failure modes: open logs and continues, closed refuses with 503; slow hooks time out', async () => {
    const broken = (name: string) => definePlugin({ name, version: '1', apiVersion: 1, setup: () => ({ onAccess: () => { throw new Error('bug') } }) })
    const slow = definePlugin({ name: 'slow', version: '1', apiVersion: 1, setup: () => ({ onAccess: () => Bun.sleep(5_000) }) })
    const open = await gatewayWith([{ use: broken('lenient'), failureMode: 'open' }])
    expect((await open.call('hi')).status).toBe(200)
    await gw!.close()
    const closed = await gatewayWith([{ use: broken('strict'), failureMode: 'closed' }])
    const res = await closed.call('hi')
    expect(res.status).toBe(503)
    expect(((await res.json()) as any).error.message).toContain("'strict'")
    await gw!.close()
    const timed = await gatewayWith([{ use: slow, failureMode: 'closed', timeoutMs: 100 }])
    const started = performance.now()
    expect((await timed.call('hi')).status).toBe(503)
    expect(performance.now() - started).toBeLessThan(1000)
  })

  test('a hook that returns what it may not is that plugin’s failure (its mode decides), never a 500 or garbage sent on', async () => {
    const misbehaving = (name: string) =>
      definePlugin({
        name,
        version: '1.0.0',
        apiVersion: 1,
        setup: () => ({
          onAuth: (ctx) => {
            const how = ctx.request.headers.get('x-mis')
            if (how === 'garbage') return 'a principal, honestly' as any
            if (how === 'partial') return { keyId: 'from-the-plugin' } as any // the rest left out: none
          },
          onRequestBody: (ctx) => {
            if (JSON.stringify(ctx.body).includes('drop-body')) (ctx as any).body = null
            if (JSON.stringify(ctx.body).includes('odd-status')) throw new GatewayError(999, 'a status no HTTP response has')
          },
          onResponse: (_ctx, body) => {
            const sent = fake.requests.at(-1)?.text ?? ''
            if (!JSON.stringify(body).includes('"choices"')) return undefined
            if (sent.includes('bad-response')) return 'not an object' as any
            // A Response is not an answer object: it went out as `{}`.
            if (sent.includes('response-object')) return new Response('{"refused":true}', { status: 202 }) as any
          },
          onChunk: (ctx) => {
            const content = ctx.request.body?.messages?.[0]?.content
            if (content === 'bad-chunk') return 'garbage-chunk' as any
            // An async hook that throws: its rejection must not end the process (it did, unhandled).
            if (content === 'async-throw') return Promise.reject(new Error('moderation service said no')) as any
          },
        }),
      })
    const ask = (content: string, extra: Record<string, unknown> = {}, headers: Record<string, string> = {}, apiKey?: string) =>
      fetch(`${gw!.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { ...(apiKey ? { authorization: `Bearer ${apiKey}` } : {}), 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content }], ...extra }),
      })
    const closed = await gatewayWith([{ use: misbehaving('strict-mis'), failureMode: 'closed' }])
    const code = async (res: Response) => [res.status, ((await res.json()) as any).error?.code]
    expect(await code(await ask('hi', {}, { 'x-mis': 'garbage' }))).toEqual([503, 'plugin_failure'])
    expect((await ask('hi', {}, { 'x-mis': 'partial' })).status).toBe(200)
    expect(await code(await ask('drop-body', {}, {}, closed.key))).toEqual([503, 'plugin_failure'])
    expect(await code(await ask('odd-status', {}, {}, closed.key))).toEqual([503, 'plugin_failure'])
    expect(await code(await ask('bad-response', {}, {}, closed.key))).toEqual([503, 'plugin_failure'])
    expect(await code(await ask('response-object', {}, {}, closed.key))).toEqual([503, 'plugin_failure'])
    const streamed = await (await ask('bad-chunk', { stream: true }, {}, closed.key)).text()
    expect(streamed).toContain('"code":"plugin_failure"')
    expect(streamed).not.toContain('garbage-chunk')
    expect(await (await ask('async-throw', { stream: true }, {}, closed.key)).text()).toContain('"code":"plugin_failure"')
    await gw!.close()
    const open = await gatewayWith([{ use: misbehaving('lenient-mis'), failureMode: 'open' }])
    // Open: the wrong answer is ignored, and the request goes on as if the hook had said nothing.
    expect((await ask('hi', {}, { 'x-mis': 'garbage' }, open.key)).status).toBe(200)
    const answer = (await (await ask('bad-response', {}, {}, open.key)).json()) as any
    expect(answer.choices[0].message.content).toBeString()
    const relayed = await (await ask('bad-chunk', { stream: true }, {}, open.key)).text()
    expect(relayed).toContain('data: [DONE]')
    expect(relayed).not.toContain('garbage-chunk')
    expect(await (await ask('async-throw', { stream: true }, {}, open.key)).text()).toContain('data: [DONE]')
    await Bun.sleep(50) // a rejection left unhandled would surface here
  })

  test('a guardrail edits what /v1/responses sends to an OpenAI target too: with it, the door translates instead of relaying', async () => {
    const { key } = await gatewayWith([{ use: redact }])
    const responses = (body: Record<string, unknown>) =>
      fetch(`${gw!.baseURL}/responses`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', ...body }) })
    for (const stream of [false, true]) {
      const res = await responses({ input: 'mail me at alice@example.com', stream })
      expect(res.status).toBe(200)
      await res.text()
      const sent = fake.requests.at(-1)!
      expect([stream, sent.path, sent.text.includes('alice@example.com'), sent.text.includes('[email]')]).toEqual([stream, '/v1/chat/completions', false, true])
    }
    // What only OpenAI's own Responses API can carry cannot pass the guardrail: refused, naming it.
    const refused = await responses({ input: 'hi', prompt: { id: 'pmpt_1' } })
    expect([refused.status, ((await refused.json()) as any).error.param]).toEqual([400, 'prompt'])
  })

  test('onChunk sees and may rewrite parsed chunks; onLog fires once for success, refusal and abort', async () => {
    const logs: FinishedRequest[] = []
    const shout = definePlugin({
      name: 'shout',
      version: '1',
      apiVersion: 1,
      setup: () => ({
        onChunk(_ctx, chunk) {
          const delta = chunk.choices?.[0]?.delta
          if (delta?.content) delta.content = delta.content.toUpperCase()
        },
        onLog: (f) => void logs.push(f),
      }),
    })
    const { call } = await gatewayWith([{ use: shout }])
    const text = await (await call('hi', { stream: true })).text()
    expect(text).toContain('"content":"HELLO"')
    expect(text).not.toContain('"content":"Hello"')
    expect(text).toContain('"model":"m"')

    await call('hi', {}, 'condt_wrong')
    const controller = new AbortController()
    const res = await fetch(`${gw!.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${(await gw!.admin('POST', '/keys', { name: 'k2' })).key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'slow-stream:100' }] }),
      signal: controller.signal,
    })
    await res.body!.getReader().read()
    controller.abort()
    const deadline = Date.now() + 2000
    while (logs.length < 3 && Date.now() < deadline) await Bun.sleep(20)

    expect(logs.length).toBe(3)
    const [ok, refused, aborted] = logs as [FinishedRequest, FinishedRequest, FinishedRequest]
    expect(ok).toMatchObject({ status: 200, aborted: false, stream: true })
    expect(ok.usage!.total_tokens).toBeGreaterThan(0)
    expect(refused).toMatchObject({ status: 401, aborted: false })
    expect(refused.error!.code).toBe('invalid_api_key')
    expect(aborted).toMatchObject({ aborted: true, stream: true })
    // Aborted streams are still accounted: estimated when the upstream never sent usage.
    expect(aborted.usage!.prompt_tokens).toBeGreaterThan(0)
    expect(aborted.usage!.estimated).toBe(true)
  })
})
