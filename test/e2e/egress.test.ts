import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test'
import { hostname } from 'node:os'
import fc from 'fast-check'
import { EgressPolicy, parseAllowList, type Lookup } from '../../src/core/egress.ts'
import { GatewayError } from '../../src/plugin-sdk/errors.ts'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'

/*
 * SSRF through a configured base URL (checklist PR14, FZ3): private, loopback, link-local and reserved addresses
 * in any spelling are refused when configured, and again at connect time after DNS, with 0 connections made.
 * These gateways run with their own allow-list, not the suite's loopback one.
 */

/** A TCP port that counts the connections it accepts (and answers nothing). */
function countingListener(host = '127.0.0.1') {
  let accepts = 0
  const listener = Bun.listen({ hostname: host, port: 0, socket: { open: () => void accepts++, data() {} } })
  return {
    port: listener.port,
    get accepts() {
      return accepts
    },
    /** Proves the listener counts a connection to `target` (so that a later 0 means something), then resets. */
    async control(target: string) {
      const socket = await Bun.connect({ hostname: target, port: listener.port, socket: { data() {} } })
      for (let i = 0; i < 100 && accepts === 0; i++) await Bun.sleep(5)
      socket.end()
      expect(accepts).toBe(1)
      accepts = 0
    },
    stop: () => listener.stop(true),
  }
}

/** One chat request to `model` on `gw`, with a key made for it. */
async function chat(gw: TestGateway, model: string) {
  const key = (await gw.admin('POST', '/keys', { name: `key-for-${model}` })).key
  return fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
  })
}

/** Configures `baseURL` as a provider and a model named `name`, then sends one chat request through them. */
async function chatThrough(gw: TestGateway, name: string, baseURL: string) {
  await gw.admin('POST', '/providers', { name, type: 'openai', base_url: baseURL, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name, targets: [{ provider: name, model: 'gpt-4o' }] })
  return chat(gw, name)
}

/**
 * A host name that passes configuration (it is not `localhost`) and that this machine resolves to a private
 * address through /etc/hosts: the real resolver, no stub. Present where we run (vm, runsc, or a container's name
 * resolving to its 172.x address).
 */
const ownName = hostname()
const resolved = await Bun.dns.lookup(ownName, { family: 4 }).catch(() => [])
const privateOwnName = resolved.length > 0 && resolved.every((r) => !new EgressPolicy([]).addressAllowed(r.address))

/** The PR14 corpus: the private, loopback and metadata addresses in the spellings SSRF filters miss, and other schemes. */
const CORPUS = [
  'http://127.0.0.1/v1',
  'http://127.1/v1',
  'http://0x7f000001/',
  'http://2130706433/',
  'http://0177.0.0.1/',
  'http://0x7f.0.0.1/',
  'http://127.000.000.001/',
  'http://①②⑦.0.0.1/',
  'http://[::1]:11434/v1',
  'http://[0:0:0:0:0:0:0:1]/',
  'http://[::ffff:127.0.0.1]/',
  'http://[::ffff:7f00:1]/',
  'http://[::127.0.0.1]/',
  'http://169.254.169.254/latest/meta-data/',
  'http://[::ffff:169.254.169.254]/',
  'http://[64:ff9b::a9fe:a9fe]/',
  'http://10.0.0.1/',
  'http://10.255.255.255:8080/v1',
  'http://172.16.0.1/',
  'http://192.168.1.1/',
  'http://100.64.0.1/',
  'http://0.0.0.0:8000/v1',
  'http://0/',
  'http://[::]/',
  'http://[fe80::1]/',
  'http://[fd12:3456::1]/',
  'http://224.0.0.1/',
  'http://localhost:11434/v1',
  'http://LOCALHOST./',
  'http://ollama.localhost/v1',
  'file:///etc/passwd',
  'gopher://127.0.0.1:6379/_INFO',
  'ftp://10.0.0.1/',
  'ws://169.254.169.254/',
]

describe('configuration time, default policy (nothing private allowed)', () => {
  let gw: TestGateway
  beforeAll(async () => {
    gw = await startGateway({ egressAllow: [] })
    await gw.admin('POST', '/providers', { name: 'public', type: 'openai', base_url: 'https://api.openai.com/v1' })
  })
  afterAll(() => gw.close())

  test(`the ${CORPUS.length}-entry corpus is refused at create and at patch, naming base_url and the allow-list`, async () => {
    for (const url of CORPUS) {
      for (const res of [
        await gw.adminRaw('POST', '/providers', { name: `ssrf-${url}`, type: 'openai', base_url: url }),
        await gw.adminRaw('PATCH', '/providers/public', { base_url: url }),
      ]) {
        const body = (await res.json()) as any
        expect({ url, status: res.status, param: body.error?.param }).toEqual({ url, status: 400, param: 'base_url' })
        validateSchema('ErrorResponse', body)
        const http = url.startsWith('http')
        expect(body.error.code).toBe(http ? 'base_url_not_allowed' : 'invalid_value')
        if (http) expect(body.error.message).toContain('CONDUIT_EGRESS_ALLOW')
      }
    }
    expect((await gw.admin('GET', '/providers/public')).base_url).toBe('https://api.openai.com/v1')
  })

  test('public addresses and names pass; a type whose default address is loopback (ollama) is refused', async () => {
    const publicURLs = ['https://api.openai.com/v1', 'http://8.8.8.8/v1', 'http://[2606:4700:4700::1111]/v1', 'https://llm.example.com:8443/v1']
    for (const base_url of publicURLs) {
      expect((await gw.admin('POST', '/providers', { name: `ok-${base_url}`, type: 'openai-compatible', base_url })).base_url).toBe(base_url)
    }
    const res = await gw.adminRaw('POST', '/providers', { name: 'local-ollama', type: 'ollama' })
    const error = ((await res.json()) as any).error
    expect(res.status).toBe(400)
    expect(error).toMatchObject({ param: 'base_url', code: 'base_url_not_allowed' })
    expect(error.message).toContain('http://127.0.0.1:11434/v1')
    expect(error.message).toContain('CONDUIT_EGRESS_ALLOW')
  })

  test('the config-file seed is held to the same policy: a private base_url stops the start', async () => {
    const seed = { providers: [{ name: 'metadata', type: 'openai', base_url: 'http://169.254.169.254/' }] }
    await expect(startGateway({ egressAllow: [], seed })).rejects.toThrow(/base_url points at a private.*CONDUIT_EGRESS_ALLOW/)
  })
})

describe('the allow-list', () => {
  test('names, addresses and CIDRs allow exactly what they name', () => {
    const policy = new EgressPolicy(parseAllowList(' 10.0.0.0/8, ollama.internal ,[fd00::5],192.168.1.7 '))
    const allowed = ['http://10.1.2.3/v1', 'http://OLLAMA.internal.:11434/v1', 'http://[fd00::5]/', 'http://192.168.1.7/', 'http://[::ffff:a09:909]/']
    for (const url of allowed) {
      expect({ url, refusal: policy.refusal(url) }).toEqual({ url, refusal: null })
    }
    for (const url of ['http://192.168.1.8/', 'http://[fd00::6]/', 'http://127.0.0.1/', 'http://other.internal.localhost/']) {
      expect(policy.refusal(url)?.code).toBe('base_url_not_allowed')
    }
    // `localhost` designates both loopback addresses: allowing 127.0.0.1 alone does not allow the name.
    expect(new EgressPolicy(['127.0.0.1']).refusal('http://localhost:8000/')?.message).toContain('::1')
    expect(new EgressPolicy(['localhost']).refusal('http://localhost:8000/')).toBeNull()
  })

  test('a malformed entry stops the start', () => {
    for (const entry of ['10.0.0.0/33', 'http://ollama', 'a b', '10.0.0.0/x', 'host:8080']) {
      expect(() => parseAllowList(`127.0.0.1,${entry}`)).toThrow(`CONDUIT_EGRESS_ALLOW: '${entry}'`)
    }
  })
})

describe('connect time', () => {
  let gw: TestGateway
  let listener: ReturnType<typeof countingListener>
  beforeAll(async () => {
    gw = await startGateway({ egressAllow: [] })
  })
  afterAll(() => gw.close())
  afterEach(() => listener?.stop())

  async function expectRefused(res: Response) {
    const body = (await res.json()) as any
    expect({ status: res.status, code: body.error?.code }).toEqual({ status: 502, code: 'upstream_not_allowed' })
    validateSchema('ErrorResponse', body)
    expect(body.error.message).not.toContain('127.0.0.1') // internal addresses are not the client's business
  }

  test('rows stored before the policy existed (a literal and a name resolving to loopback) get 0 connections', async () => {
    listener = countingListener()
    await listener.control('127.0.0.1')
    for (const [name, host] of [['legacy-literal', '127.0.0.1'], ['legacy-name', 'localhost']] as const) {
      // Written through the store, as the admin API allowed before this check.
      await gw.gateway.store.insertProvider({
        id: `prov_${name}`,
        name,
        type: 'openai',
        baseURL: `http://${host}:${listener.port}/v1`,
        baseURLSecret: null,
        apiKeySecret: null,
        apiKeyLast4: null,
        options: {},
      })
      await gw.admin('POST', '/models', { name, targets: [{ provider: name, model: 'gpt-4o' }] })
      await expectRefused(await chat(gw, name))
    }
    expect(listener.accepts).toBe(0)
  })

  test.if(privateOwnName)(`a name allowed at configuration that resolves to a private address (${ownName}) is refused at connect time`, async () => {
    listener = countingListener('0.0.0.0')
    await listener.control(resolved[0]!.address)
    await expectRefused(await chatThrough(gw, 'own-name', `http://${ownName}:${listener.port}/v1`))
    expect(listener.accepts).toBe(0)
  })
})

describe('redirects', () => {
  let gw: TestGateway
  let redirector: ReturnType<typeof Bun.serve>
  let listener: ReturnType<typeof countingListener>
  afterAll(async () => {
    await gw.close()
    redirector.stop(true)
    listener.stop()
  })

  test('a 3xx from an allowed upstream towards a private address is an error, not a follow', async () => {
    listener = countingListener()
    await listener.control('127.0.0.1')
    // The allowed upstream answers every call with a redirect to the metadata-like target.
    redirector = Bun.serve({
      hostname: '127.0.0.1',
      port: 0,
      fetch: () => new Response(null, { status: 307, headers: { location: `http://localhost:${listener.port}/v1/chat/completions` } }),
    })
    gw = await startGateway({ egressAllow: ['127.0.0.1'] })
    const res = await chatThrough(gw, 'redirector', `http://127.0.0.1:${redirector.port}/v1`)
    const body = (await res.json()) as any
    expect(res.status).toBe(502)
    expect(body.error.code).toBe('upstream_redirect')
    expect(res.headers.get('x-conduit-attempts')).toBe('1') // the same answer would come again
    expect(res.headers.get('location')).toBeNull()
    expect(listener.accepts).toBe(0)
  })
})

describe('DNS at connect time (resolver stub)', () => {
  const policy = (answers: () => string[], ttlMs = 20) => {
    let lookups = 0
    const lookup: Lookup = async () => {
      lookups++
      const addresses = answers()
      if (addresses.length === 0) throw new Error('getaddrinfo ENOTFOUND')
      return addresses
    }
    return { policy: new EgressPolicy([], { lookup, ttlMs }), lookups: () => lookups }
  }
  /** A check answers at once (undefined) for an origin allowed moments ago, else with a promise. */
  const refusedWith = (check: Promise<void> | undefined) =>
    Promise.resolve(check).then(
      () => null,
      (error: GatewayError) => error.code,
    )

  test('a name that rebinds from a public to a private address is refused once its short-lived verdict expires', async () => {
    let answer = ['93.184.215.14']
    const { policy: rebinding, lookups } = policy(() => answer)
    expect(await refusedWith(rebinding.check('http://rebind.example/v1/chat/completions'))).toBeNull()
    answer = ['127.0.0.1']
    expect(await refusedWith(rebinding.check('http://rebind.example/v1/chat/completions'))).toBeNull() // within the TTL: one lookup
    expect(lookups()).toBe(1)
    await Bun.sleep(40)
    expect(await refusedWith(rebinding.check('http://rebind.example/v1/chat/completions'))).toBe('upstream_not_allowed')
    expect(lookups()).toBe(2)
  })

  test('one private address among several refuses the host; other schemes never pass; a failed lookup is asked again', async () => {
    const { policy: mixed } = policy(() => ['93.184.215.14', '10.0.0.8'])
    expect(await refusedWith(mixed.check('https://mixed.example/'))).toBe('upstream_not_allowed')
    const { policy: scoped } = policy(() => ['fe80::1%eth0'])
    expect(await refusedWith(scoped.check('https://scoped.example/'))).toBe('upstream_not_allowed')
    // Whatever an adapter builds, only http(s) leaves the gateway (Bun's fetch would read a file: URL); a data:
    // URL connects nowhere.
    for (const url of ['file:///etc/passwd', 'gopher://mixed.example/', 'blob:http://mixed.example/1', 'not a url']) {
      expect(await refusedWith(mixed.check(url))).toBe('upstream_not_allowed')
    }
    expect(await refusedWith(mixed.check('data:application/json;base64,e30='))).toBeNull()
    // A failed lookup is a retryable 502 (another target may serve), not a verdict to keep.
    const { policy: failing, lookups } = policy(() => [], 60_000)
    expect(await refusedWith(failing.check('https://nowhere.example/'))).toBe('upstream_unreachable')
    expect(await refusedWith(failing.check('https://nowhere.example/'))).toBe('upstream_unreachable')
    expect(lookups()).toBe(2)
  })
})

describe('FZ3: generated encodings of private addresses', () => {
  /** [first address as a 32-bit number, prefix length] of IPv4 ranges that must never be reachable. */
  const PRIVATE_V4: [number, number][] = [
    [0x0a000000, 8],
    [0x7f000000, 8],
    [0xa9fe0000, 16],
    [0xac100000, 12],
    [0xc0a80000, 16],
    [0x64400000, 10],
    [0x00000000, 8],
  ]
  const privateV4 = fc
    .tuple(fc.constantFrom(...PRIVATE_V4), fc.nat())
    .map(([[base, prefix], n]) => (base | (prefix === 0 ? n : n & (2 ** (32 - prefix) - 1))) >>> 0)
  const dotted = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.')

  /** One IPv4 part in decimal, hex (either case) or octal, as the WHATWG parser accepts. */
  const part = (value: number) =>
    fc.constantFrom(
      String(value),
      `0x${value.toString(16)}`,
      `0X${value.toString(16).toUpperCase()}`,
      `0${value.toString(8)}`,
      `0x${value.toString(16).padStart(8, '0')}`,
    )
  /** 1 to 4 parts: a.b.c.d, a.b.(c·256+d), a.(b·65536+…), or the whole number. */
  const ipv4Text = (n: number) =>
    fc.integer({ min: 1, max: 4 }).chain((parts) => {
      const bytes = [24, 16, 8, 0].map((s) => (n >>> s) & 255)
      const head = bytes.slice(0, parts - 1)
      const tail = bytes.slice(parts - 1).reduce((acc, b) => acc * 256 + b, 0)
      return fc.tuple(...[...head, tail].map(part), fc.boolean()).map((pieces) => {
        const trailingDot = pieces.pop() as boolean
        return (pieces as string[]).join('.') + (trailingDot ? '.' : '')
      })
    })
  const hex4 = (n: number) => [(n >>> 16).toString(16), (n & 0xffff).toString(16)]
  const ipv6Text = (n: number) =>
    fc.constantFrom(
      `[::ffff:${dotted(n)}]`,
      `[::ffff:${hex4(n).join(':')}]`,
      `[0:0:0:0:0:ffff:${hex4(n).join(':')}]`,
      `[0000:0000:0000:0000:0000:FFFF:${dotted(n)}]`,
      `[64:ff9b::${dotted(n)}]`,
      `[2002:${hex4(n).join(':')}::1]`,
      `[::${dotted(n)}]`,
    )
  const privateV6 = fc.oneof(
    fc.constantFrom('[::1]', '[0:0:0:0:0:0:0:1]', '[0000::0001]', '[::]', '[::0]'),
    fc
      .tuple(fc.constantFrom('fc00', 'fd00', 'FD00', 'fe80', 'fe90', 'fea0', 'FEB0'), fc.array(fc.nat(0xffff), { minLength: 1, maxLength: 6 }))
      .map(([prefix, words]) => `[${prefix}::${words.map((w) => w.toString(16)).join(':')}]`),
  )
  const privateHost = fc.oneof(
    privateV4.chain((n) => ipv4Text(n).map((text) => ({ text, dotted: dotted(n) }))),
    privateV4.chain((n) => ipv6Text(n).map((text) => ({ text, dotted: null }))),
    privateV6.map((text) => ({ text, dotted: null })),
  )
  const port = fc.option(fc.integer({ min: 1, max: 65535 }))
  const url = fc.tuple(privateHost, fc.constantFrom('http', 'https', 'HTTP'), port, fc.constantFrom('', '/v1', '/v1/chat'))

  test('10,000 cases: refused at configuration and at connect time', async () => {
    const policy = new EgressPolicy([], { lookup: async () => ['93.184.215.14'] })
    await fc.assert(
      fc.asyncProperty(url, async ([host, scheme, port, path]) => {
        const text = `${scheme}://${host.text}${port === null ? '' : `:${port}`}${path}`
        // The generator is honest: an IPv4 spelling parses to the very address it encodes.
        if (host.dotted) expect(new URL(text).hostname).toBe(host.dotted)
        expect(policy.refusal(text)?.code).toBe('base_url_not_allowed')
        expect(await Promise.resolve(policy.check(text)).then(() => 'accepted', (e: GatewayError) => e.code)).toBe('upstream_not_allowed')
      }),
      { numRuns: 10_000 },
    )
  })

  test('the same spellings of public addresses are accepted (the property can fail)', () => {
    const policy = new EgressPolicy([])
    const publicHost = fc.constantFrom(0x08080808, 0x5db8d80e, 0x01010101).chain(ipv4Text)
    fc.assert(fc.property(publicHost, (text) => expect(policy.refusal(`http://${text}/`)).toBeNull()), { numRuns: 200 })
  })
})

describe('the suite default still reaches loopback fakes', () => {
  let fake: FakeOpenAI
  let gw: TestGateway
  afterAll(async () => {
    await gw.close()
    await fake.stop()
  })

  test('with CONDUIT_EGRESS_ALLOW from the preload, a provider on 127.0.0.1 answers', async () => {
    expect(parseAllowList(process.env.CONDUIT_EGRESS_ALLOW)).toContain('127.0.0.1')
    fake = await startFakeOpenAI()
    gw = await startGateway()
    const res = await chatThrough(gw, 'fake', fake.url)
    expect(res.status).toBe(200)
    await res.text()
  })
})
