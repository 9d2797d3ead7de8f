import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { loadConfig, parseConfigFile } from '../src/config/config.ts'
import { AdminGuard } from '../src/core/admin.ts'
import { GatewayError } from '../src/plugin-sdk/errors.ts'
import { MASTER_KEY, startGateway, type TestGateway } from './helpers/gateway.ts'
import { validateSchema } from './helpers/openapi.ts'
import { ROOT } from './helpers/process.ts'

/** The admin API and configured entities, probed as an attacker and a careless operator would (issue 10). */
let gw: TestGateway
beforeAll(async () => {
  gw = await startGateway()
})
afterAll(() => gw.close())

const raw = (method: string, route: string, body: string | undefined, token?: string) =>
  fetch(`${gw.origin}/admin/v1${route}`, {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' },
    body,
  })

/** Expects our error envelope with this status (and param / code when given); returns the error. */
async function expectError(res: Response, status: number, expected: { param?: string | null; code?: string } = {}) {
  const body = (await res.json()) as any
  expect({ status: res.status, body }).toMatchObject({ status, body: { error: expected } })
  validateSchema('ErrorResponse', body)
  return body.error as { message: string; param: string | null; code: string }
}

describe('virtual key names are unique', () => {
  test('create and rename onto a taken name are 409; renaming a key to its own name is fine', async () => {
    const first = await gw.admin('POST', '/keys', { name: 'unique-a' })
    await gw.admin('POST', '/keys', { name: 'unique-b' })
    await expectError(await gw.adminRaw('POST', '/keys', { name: 'unique-a' }), 409, { code: 'conflict', param: 'name' })
    await expectError(await gw.adminRaw('PATCH', '/keys/unique-b', { name: 'unique-a' }), 409, { code: 'conflict', param: 'name' })
    expect((await gw.admin('PATCH', `/keys/${first.id}`, { name: 'unique-a', rpm: 5 })).rpm).toBe(5)
    expect((await gw.admin('GET', '/keys')).data.filter((k: any) => k.name === 'unique-a')).toHaveLength(1)
  })

  test('keys that shared a name before names were unique keep the oldest on it; the others get their id after it', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-twins-'))
    try {
      const first = await startGateway({ dataDir })
      const older = await first.admin('POST', '/keys', { name: 'twins' })
      const younger = await first.admin('POST', '/keys', { name: 'twin-2' })
      // As the store was before migration 16: the index gone, the name written twice.
      await first.gateway.store.sql.unsafe('DROP INDEX virtual_keys_name')
      // Made in one millisecond, the two would be ordered by id: the younger is made a second younger.
      await first.gateway.store.sql`UPDATE virtual_keys SET name = 'twins', created_at = created_at + 1000 WHERE id = ${younger.id}`
      await first.gateway.store.sql`DELETE FROM schema_migrations WHERE version = 16`
      await first.close()
      const again = await startGateway({ dataDir })
      expect((await again.admin('GET', '/keys/twins')).id).toBe(older.id)
      expect((await again.admin('GET', `/keys/${younger.id}`)).name).toBe(`twins (${younger.id})`)
      await again.close()
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })

  test('the config seed finds its keys by name: created once, updated after', async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-seed-'))
    try {
      const seed = { keys: [{ name: 'ci', rpm: 10 }] }
      const first = await startGateway({ dataDir, seed })
      expect(first.gateway.generatedKeys.map((k) => k.name)).toEqual(['ci'])
      await first.close()
      const again = await startGateway({ dataDir, seed: { keys: [{ name: 'ci', rpm: 20 }] } })
      expect(again.gateway.generatedKeys).toEqual([]) // found by name and updated, not created again
      expect((await again.admin('GET', '/keys/ci')).rpm).toBe(20)
      await again.close()
      // A refusal names what the file asked for.
      const bad = { models: [{ name: 'my-model', targets: [{ provider: 'ghost', model: 'gpt-4o' }] }] }
      await expect(startGateway({ dataDir, seed: bad })).rejects.toThrow("Config file, model 'my-model': ")
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})

describe('authentication comes before the body', () => {
  test('without the master key, a malformed, invalid or oversized body is a 401, not a 400 or 413', async () => {
    const oversized = JSON.stringify({ name: 'x', metadata: { pad: 'x'.repeat(3 * 1024 * 1024) } })
    const bodies = ['{"name":', '{"name": 42, "rmp": 1}', '['.repeat(50_000), oversized]
    for (const body of bodies) {
      for (const token of [undefined, 'wrong-master-key-000']) {
        await expectError(await raw('POST', '/keys', body, token), 401, { code: token ? 'invalid_api_key' : 'missing_api_key' })
      }
    }
    // With the key, the same bodies are judged on their merits.
    await expectError(await raw('POST', '/keys', bodies[0], MASTER_KEY), 400, { code: 'invalid_json' })
    await expectError(await raw('POST', '/keys', bodies[1], MASTER_KEY), 400, { param: 'rmp', code: 'unknown_parameter' })
    // Unknown admin paths do not answer before authentication either.
    await expectError(await raw('GET', '/secret-route', undefined), 401)
  })

  test('no spelling of an admin path reaches a route without authentication (raw request lines)', async () => {
    const port = Number(new URL(gw.origin).port)
    const statusOf = (target: string) =>
      new Promise<number>((resolve) => {
        let text = ''
        Bun.connect({
          hostname: '127.0.0.1',
          port,
          socket: {
            open: (socket) => void socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`),
            data: (_socket, chunk) => void (text += chunk.toString()),
            close: () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)),
          },
        })
      })
    const targets = ['/admin/v1/keys', '/%61dmin/v1/keys', '/admin/v1/%6beys', '/x/../admin/v1/keys', '/./admin/v1/keys', '//admin/v1/keys']
    for (const target of [...targets, '/Admin/v1/keys', '/admin%2fv1/keys', '/admin/v1/keys/', 'http://x/admin/v1/keys']) {
      const status = await statusOf(target)
      expect({ target, refused: status === 401 || status === 404 }).toEqual({ target, refused: true })
    }
  })
})

describe('unknown fields are refused, at any level, naming the field', () => {
  beforeAll(async () => {
    await gw.admin('POST', '/providers', { name: 'fields-provider', type: 'openai', api_key: 'sk-x' })
    await gw.admin('POST', '/models', { name: 'fields-model', targets: [{ provider: 'fields-provider', model: 'a' }] })
    await gw.admin('POST', '/keys', { name: 'fields-key' })
  })

  test.each([
    ['POST', '/keys', { name: 'k-rmp', rmp: 5 }, 'rmp'],
    ['POST', '/keys', { name: 'k-admin', is_admin: true }, 'is_admin'],
    ['POST', '/keys', { name: 'k-budget', budget: { usd: 5, period: 'daily', currency: 'EUR' } }, 'budget.currency'],
    ['PATCH', '/keys/fields-key', { rmp: 5 }, 'rmp'],
    ['POST', '/providers', { name: 'p-typo', type: 'openai', apikey: 'sk-x' }, 'apikey'],
    ['POST', '/keys', { name: 'k-perod', budget: { usd: 5, perod: 'daily' } }, 'budget.perod'],
    ['POST', '/providers', { name: 'p-timeout-typo', type: 'openai', options: { timeouts: { first_byte: 5 } } }, 'options.timeouts.first_byte'],
    ['PATCH', '/providers/fields-provider', { baseurl: 'https://example.com' }, 'baseurl'],
    ['POST', '/models', { name: 'm-weight', targets: [{ provider: 'fields-provider', model: 'a', wieght: 2 }] }, 'targets[0].wieght'],
    [
      'POST',
      '/models',
      { name: 'm-price', targets: [{ provider: 'fields-provider', model: 'a', price: { input: 1, output: 2, extra: 3 } }] },
      'targets[0].price.extra',
    ],
    ['POST', '/models', { name: 'm-limits', targets: [{ provider: 'fields-provider', model: 'a' }], limits: { rmp: 10 } }, 'limits.rmp'],
    ['PATCH', '/models/fields-model', { routing: { strategy: 'weighted', retry: 2 } }, 'routing.retry'],
  ] as const)('%s %s with %j → 400 naming %s', async (method, route, body, param) => {
    const error = await expectError(await gw.adminRaw(method, route, body), 400, { param, code: 'unknown_parameter' })
    expect(error.message).toContain(param)
  })

  test('options and metadata stay free-form', async () => {
    const key = await gw.admin('POST', '/keys', { name: 'free-form', metadata: { team: 'a', tags: ['x'], nested: { deep: { ok: true } } } })
    expect(key.metadata.nested.deep.ok).toBe(true)
    const options = { organization: 'org-1', anything: { at: 'all' } }
    const provider = await gw.admin('POST', '/providers', { name: 'free-options', type: 'openai', options })
    expect(provider.options.anything.at).toBe('all')
  })

  test('config files use the same schemas: an unknown field is refused with its path; ISO expiry dates are valid', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conduit-config-'))
    try {
      const file = path.join(dir, 'conduit.yaml')
      await Bun.write(file, 'keys:\n  - name: ci\n    rmp: 10\n')
      await expect(parseConfigFile(file, {})).rejects.toThrow("at '/keys/0/rmp'")
      // Before, `format: 'date-time'` was only known once Elysia had loaded, so a config file could not set an ISO expiry.
      await Bun.write(file, 'keys:\n  - name: ci\n    expires_at: "2030-01-01T00:00:00Z"\n    metadata: { team: a }\n')
      expect((await parseConfigFile(file, {})).keys?.[0]?.expires_at).toBe('2030-01-01T00:00:00Z')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('wrong master keys are throttled per client address', () => {
  test('past 10 wrong keys in a minute: 429 with Retry-After, for the right key too; a missing key is not a guess', async () => {
    const own = await startGateway()
    try {
      const keys = (token?: string) => fetch(`${own.origin}/admin/v1/keys`, { headers: token ? { authorization: `Bearer ${token}` } : {} })
      for (let i = 0; i < 20; i++) await expectError(await keys(), 401, { code: 'missing_api_key' })
      for (let i = 0; i < 10; i++) await expectError(await keys(`guess-number-${i}`), 401, { code: 'invalid_api_key' })
      expect((await keys(MASTER_KEY)).status).toBe(200)
      for (const token of ['guess-number-10', MASTER_KEY]) {
        const res = await keys(token)
        const retryAfter = Number(res.headers.get('retry-after'))
        await expectError(res, 429, { code: 'rate_limit_exceeded' })
        expect(retryAfter).toBeGreaterThanOrEqual(1)
        expect(retryAfter).toBeLessThanOrEqual(60)
      }
    } finally {
      await own.close()
    }
  })

  test('the lockout ends after a minute, counts per address (IPv6 per /64), and forgets idle addresses', () => {
    let now = 1_000_000
    const guard = new AdminGuard((token) => token === 'right', () => now)
    const attempt = (token: string, address: string) => {
      try {
        guard.authorize(`Bearer ${token}`, address)
        return 200
      } catch (error) {
        return (error as GatewayError).status
      }
    }
    for (let i = 0; i < 10; i++) expect(attempt('wrong', '2001:db8:1:2::1')).toBe(401)
    expect(attempt('wrong', '2001:db8:1:2:ffff::9')).toBe(429) // the same /64
    expect(attempt('right', '2001:db8:1:2::1')).toBe(429)
    expect(attempt('right', '2001:db8:1:3::1')).toBe(200) // another /64
    expect(attempt('right', '192.0.2.1')).toBe(200)
    now += 60_001
    expect(attempt('right', '2001:db8:1:2::1')).toBe(200)
    // Failures spread over more than a minute never lock.
    for (let i = 0; i < 30; i++) {
      expect(attempt('wrong', '192.0.2.7')).toBe(401)
      now += 7_000
    }
  })
})

describe('start settings are checked, not guessed', () => {
  test('a misspelled flag, a flag without its value, a number with a unit, a DATABASE_URL that is not PostgreSQL or a REDIS_URL that is not Redis stops the start with one line', async () => {
    await expect(loadConfig(['--wokers', '1'], {})).rejects.toThrow("Unknown argument '--wokers'")
    await expect(loadConfig(['--data_dir', 'x'], {})).rejects.toThrow("Unknown argument '--data_dir'")
    await expect(loadConfig(['--port'], {})).rejects.toThrow('--port needs a value.')
    await expect(loadConfig(['--port', '--workers', '1'], {})).rejects.toThrow('--port needs a value.')
    expect((await loadConfig(['--port=5123', '--workers', '1'], {})).port).toBe(5123)
    for (const name of ['CONDUIT_REDIS_TIMEOUT_MS', 'CONDUIT_AUDIO_MAX_UPLOAD_BYTES', 'CONDUIT_REALTIME_IDLE_TIMEOUT_S', 'CONDUIT_DRAIN_MS', 'PORT']) {
      await expect(loadConfig([], { [name]: '50ms' })).rejects.toThrow(`must be a number, not '50ms'`)
    }
    for (const name of ['CONDUIT_REDIS_TIMEOUT_MS', 'CONDUIT_AUDIO_MAX_UPLOAD_BYTES', 'CONDUIT_MAX_BODY_BYTES', 'CONDUIT_LEDGER_MAX_QUEUED', 'CONDUIT_REALTIME_IDLE_TIMEOUT_S']) {
      for (const value of ['0', '-5']) await expect(loadConfig([], { [name]: value })).rejects.toThrow(`${name} must be more than 0, not '${value}'.`)
    }
    await expect(loadConfig(['--workers', '0'], {})).rejects.toThrow('Invalid workers: 0 (a whole number, at least 1)')
    await expect(loadConfig([], { PORT: '70000' })).rejects.toThrow('Invalid port: 70000 (at most 65535)')
    await expect(loadConfig([], { CONDUIT_LOG_LEVEL: 'verbose' })).rejects.toThrow("CONDUIT_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent; it is 'verbose'.")
    await expect(loadConfig([], { DATABASE_URL: 'postgress://127.0.0.1/test' })).rejects.toThrow("DATABASE_URL must be a postgres:// or postgresql:// URL; it begins 'postgress:'")
    expect((await loadConfig([], { DATABASE_URL: 'POSTGRES://127.0.0.1/test' })).databaseURL).toBe('POSTGRES://127.0.0.1/test')
    // ioredis would take http:// for a Unix socket path, and a database that is not a number for 0.
    await expect(loadConfig([], { REDIS_URL: 'http://127.0.0.1:6379' })).rejects.toThrow("REDIS_URL must be redis:// or rediss:// URLs; it begins 'http:'")
    await expect(loadConfig([], { REDIS_URL: 'redis://127.0.0.1:6379/two' })).rejects.toThrow("The database in REDIS_URL must be a number (redis://host:6379/2), not 'two'")
    expect((await loadConfig([], { REDIS_URL: 'rediss://a:6379/3, redis://b:6379' })).redisURL).toBe('rediss://a:6379/3, redis://b:6379')
  })

  test('a REDIS_URL database the Redis does not have stops the start: ioredis would run on database 0 instead', async () => {
    await expect(startGateway({ redisURL: 'redis://127.0.0.1:6379/99' })).rejects.toThrow("REDIS_URL names database 99, which this Redis does not have")
    const fine = await startGateway({ redisURL: 'redis://127.0.0.1:6379/15' })
    await fine.close()
  })

  test('--help and --version answer and exit 0, starting nothing', async () => {
    for (const [flag, says] of [['--help', 'Usage: conduit [--port <n>]'], ['-h', 'conduit rotate-secrets'], ['--version', `conduit 0.1.0 (Bun ${Bun.version})`]]) {
      const run = Bun.spawnSync(['bun', 'src/main.ts', flag!], { env: { ...process.env, PORT: '1' } })
      expect(run.exitCode).toBe(0)
      expect(run.stdout.toString()).toContain(says!)
    }
  })

  test("a config section's misspelled field is refused with its path (a plugin's failure_mode, a timeout), as the top level's is", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'conduit-config-'))
    try {
      const file = path.join(dir, 'conduit.yaml')
      await Bun.write(file, 'server:\n  port: [1\n')
      await expect(parseConfigFile(file, {})).rejects.toThrow(`Config file ${file} is not valid YAML`)
      for (const [text, at] of [
        ['plugins:\n  - use: builtin:request-log\n    failuremode: closed\n', '/plugins/0/failuremode'],
        ['timeouts:\n  conect_ms: 1\n', '/timeouts/conect_ms'],
        ['providers:\n  - { name: a, type: openai, options: { timeouts: { first_byte: 5 } } }\n', '/providers/0/options/timeouts/first_byte'],
        // Inside a field that may also be null (a union), the misspelling itself, not "expected union value".
        ['keys:\n  - { name: k, key: condt_x, budget: { usd: 1, perod: daily } }\n', '/keys/0/budget/perod'],
        ['models:\n  - { name: m, targets: [{ provider: p, model: x }], routing: { stratgy: weighted } }\n', '/models/0/routing/stratgy'],
        ['server:\n  prot: 1\n', '/server/prot'],
        ['ledger:\n  maxqueued: 1\n', '/ledger/maxqueued'],
        ['audio:\n  max_upload: 1\n', '/audio/max_upload'],
        ['cors:\n  origin: []\n', '/cors/origin'],
      ]) {
        await Bun.write(file, text!)
        await expect(parseConfigFile(file, {})).rejects.toThrow(`at '${at}'`)
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

describe('master key length', () => {
  test('a CONDUIT_MASTER_KEY shorter than 16 characters stops the start with one line', async () => {
    await expect(loadConfig([], { CONDUIT_MASTER_KEY: 'x'.repeat(15) })).rejects.toThrow('CONDUIT_MASTER_KEY is 15 characters long; use at least 16')
    expect((await loadConfig([], { CONDUIT_MASTER_KEY: 'x'.repeat(16) })).masterKey).toBe('x'.repeat(16))
    const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-short-'))
    try {
      const proc = Bun.spawnSync(['bun', 'src/main.ts'], {
        cwd: ROOT,
        env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', PORT: '0', CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: 'a' },
        stderr: 'pipe',
        timeout: 20_000,
      })
      expect(proc.exitCode).toBe(1)
      const lines = proc.stderr.toString().trim().split('\n')
      expect(lines).toEqual(['conduit: CONDUIT_MASTER_KEY is 1 characters long; use at least 16 (e.g. openssl rand -hex 24).'])
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  }, 30_000)
})

describe('base_url', () => {
  beforeAll(() => gw.admin('POST', '/providers', { name: 'patched-later', type: 'openai' }))

  test('credentials in it are masked in every response', async () => {
    const texts: string[] = []
    const base_url = 'https://proxy-user:hunter2-secret@api.example.com/v1'
    const created = await gw.admin('POST', '/providers', { name: 'with-creds', type: 'openai', base_url })
    texts.push(JSON.stringify(created))
    texts.push(await (await gw.adminRaw('GET', '/providers')).text())
    texts.push(await (await gw.adminRaw('GET', '/providers/with-creds')).text())
    texts.push(await (await gw.adminRaw('PATCH', '/providers/with-creds', { options: { region: 'eu' } })).text())
    texts.push(await (await gw.adminRaw('PATCH', '/providers/with-creds', { base_url: 'https://only-a-token@api.example.com/v1' })).text())
    expect(created.base_url).toBe('https://proxy-user:***@api.example.com/v1')
    expect(JSON.parse(texts[4]!).base_url).toBe('https://***@api.example.com/v1')
    for (const text of texts) {
      expect(text).not.toContain('hunter2-secret')
      expect(text).not.toContain('only-a-token')
    }
  })

  // The first five passed the old `^https?://` pattern and were stored.
  const invalid = ['http://', 'https://exa mple.com/v1', 'http://[::1/v1', 'https://x.example:99999/', 'http://%zz/', 'ftp://x.example/', 'not a url']
  test.each(invalid.map((url) => [url]))(
    'an invalid URL (%j) is refused at create and patch',
    async (url) => {
      await expectError(await gw.adminRaw('POST', '/providers', { name: `bad-${url}`, type: 'openai', base_url: url }), 400, { param: 'base_url' })
      await expectError(await gw.adminRaw('PATCH', '/providers/patched-later', { base_url: url }), 400, { param: 'base_url' })
    },
  )

  test('types without a default address need one: openai-compatible and azure at create, and a patch cannot remove it', async () => {
    for (const type of ['openai-compatible', 'azure']) {
      const error = await expectError(await gw.adminRaw('POST', '/providers', { name: `no-url-${type}`, type }), 400, {
        param: 'base_url',
        code: 'missing_required_parameter',
      })
      expect(error.message).toContain(type)
    }
    await gw.admin('POST', '/providers', { name: 'compat-with-url', type: 'openai-compatible', base_url: 'https://llm.example.com/v1' })
    await expectError(await gw.adminRaw('PATCH', '/providers/compat-with-url', { base_url: null }), 400, { param: 'base_url' })
    // Types with a public default need nothing.
    for (const type of ['openai', 'anthropic', 'groq', 'gemini', 'cohere', 'bedrock']) {
      expect((await gw.admin('POST', '/providers', { name: `default-${type}`, type })).base_url).toBeNull()
    }
  })
})

describe('upper bounds', () => {
  beforeAll(() => gw.admin('POST', '/providers', { name: 'bounds-provider', type: 'openai' }))

  test.each([
    ['/keys', { name: 'big-rpm', rpm: 1e9 + 1 }, 'rpm'],
    ['/keys', { name: 'big-tpm', tpm: 2 ** 53 }, 'tpm'],
    ['/keys', { name: 'big-parallel', max_parallel: 1e12 }, 'max_parallel'],
    ['/keys', { name: 'big-budget', budget: { usd: 1e10, period: 'total' } }, 'budget.usd'],
    ['/models', { name: 'big-model', targets: [{ provider: 'bounds-provider', model: 'a' }], limits: { rpd: 1e10 } }, 'limits.rpd'],
    ['/keys', { name: 'iso-too-far', expires_at: '+010000-01-01T00:00:00Z' }, 'expires_at'],
    // A provider's own deadlines: a string, zero or a misspelling made every call to it a 504 at once.
    ['/providers', { name: 'string-timeout', type: 'openai', options: { timeouts: { first_byte_ms: '100' } } }, 'options.timeouts.first_byte_ms'],
    ['/providers', { name: 'zero-timeout', type: 'openai', options: { timeouts: { first_byte_ms: 0 } } }, 'options.timeouts.first_byte_ms'],
  ] as const)('POST %s %j → 400 naming %s', async (route, body, param) => {
    await expectError(await gw.adminRaw('POST', route, body), 400, { param, code: 'invalid_value' })
  })

  test('expires_at in milliseconds is refused with a message saying seconds; the largest plausible second is fine', async () => {
    const ms = Date.parse('2030-01-01T00:00:00Z')
    const error = await expectError(await gw.adminRaw('POST', '/keys', { name: 'millis', expires_at: ms }), 400, { param: 'expires_at' })
    expect(error.message).toContain('seconds')
    await gw.admin('POST', '/keys', { name: 'patch-millis' })
    await expectError(await gw.adminRaw('PATCH', '/keys/patch-millis', { expires_at: ms }), 400, { param: 'expires_at' })
    expect((await gw.admin('POST', '/keys', { name: 'year-9999', expires_at: 253_402_300_799 })).expires_at).toBe(253_402_300_799)
    expect((await gw.admin('POST', '/keys', { name: 'limit-max', rpm: 1e9, budget: { usd: 1e9, period: 'monthly' } })).rpm).toBe(1e9)
  })
})

describe('deeply nested JSON', () => {
  test('100,000 levels in metadata or options are a 400, quickly, and the gateway stays up', async () => {
    const deep = (n: number) => '['.repeat(n) + ']'.repeat(n)
    for (const [method, route, body] of [
      ['POST', '/keys', `{"name":"deep","metadata":{"a":${deep(100_000)}}}`],
      ['PATCH', '/keys/free-form', `{"metadata":{"a":${deep(100_000)}}}`],
      ['POST', '/providers', `{"name":"deep","type":"openai","options":{"a":${deep(100_000)}}}`],
      ['POST', '/models', `{"name":"deep","targets":${deep(100_000)}}`],
    ] as const) {
      const started = performance.now()
      const res = await raw(method, route, body, MASTER_KEY)
      const elapsed = performance.now() - started
      await expectError(res, 400, { code: 'invalid_value' })
      // Measured ~20 ms (JSON.parse of 200 kB); the bound has 10× slack for shared cores.
      expect(elapsed).toBeLessThan(1_000)
    }
    // A depth that a real body may have is fine.
    await gw.admin('PATCH', '/keys/free-form', { metadata: JSON.parse(`{"a":${deep(20)}}`) })
    expect((await fetch(`${gw.origin}/health`)).status).toBe(200)
  })
})
