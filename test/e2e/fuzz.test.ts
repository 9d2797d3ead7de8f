import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { exchange } from '../helpers/raw-http.ts'
import fc from 'fast-check'
import { startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'

/**
 * FZ2 and the issue's fuzz run: generated bodies, headers and paths against a running gateway whose upstream is
 * healthy, so every 5xx is a gateway bug. Each answer is < 500, every error is our envelope, and /health answers
 * after every batch. Seeded (CONDUIT_FUZZ_SEED replays a run); past failures are replayed first, from CORPUS.
 */
const SEED = Number(process.env.CONDUIT_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
const BATCH = 500
/** CONDUIT_FUZZ_SCALE=10 runs 120,000 cases instead of 12,000. */
const SCALE = Number(process.env.CONDUIT_FUZZ_SCALE ?? 1)
const BROWSER_ORIGIN = 'https://app.example.com'

interface Case {
  method: string
  path: string
  headers?: Record<string, string>
  body?: string | Uint8Array
  /** Sent as written on a raw socket: fetch would normalise the path (dot segments, encodings) first. */
  raw?: boolean
}

interface Answer {
  status: number
  body: string
}

let fake: FakeOpenAI
let gw: TestGateway
let key: string
let port: number
const logs = { level: 'error', lines: [] as string[] }
const counts = { cases: 0, byStatus: new Map<number, number>() }

beforeAll(async () => {
  fake = await startFakeOpenAI()
  // CORS on, so that generated Origin headers and preflights go through its hook too.
  gw = await startGateway({ corsOrigins: [BROWSER_ORIGIN] }, logs)
  port = Number(new URL(gw.origin).port)
  await gw.admin('POST', '/providers', { name: 'fake', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'm', targets: [{ provider: 'fake', model: 'gpt-4o' }] })
  key = (await gw.admin('POST', '/keys', { name: 'fuzz' })).key
  console.log(`fuzz seed ${SEED} (replay: CONDUIT_FUZZ_SEED=${SEED} bun test test/e2e/fuzz.test.ts)`)
})

afterAll(async () => {
  const statuses = [...counts.byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`)
  console.log(`fuzz: ${counts.cases} cases, statuses ${statuses.join(' ')}; gateway error-level log lines: ${logs.lines.length}`)
  await gw.close()
  await fake.stop()
})

/**
 * Keeps the fake healthy: it fails on purpose when a message names a script (`fail-500`, `stream-die`, …), and it
 * builds every vector `dimensions` long (OpenAI refuses more than 3,072; the fake would try 2³¹).
 */
const healthy = (text: string) =>
  text.replace(/fail-|slow-|stream-stall|stream-die|midstream-error|finish-length/g, 'x').replace(/"dimensions":\s*[-+.\deE]{5,}/g, '"dimensions":8')

async function send(c: Case): Promise<Answer> {
  if (c.raw) return sendRaw(c)
  const res = await fetch(gw.origin + c.path, { method: c.method, headers: c.headers, body: c.body, signal: AbortSignal.timeout(10_000) })
  return { status: res.status, body: await res.text() }
}

/** One request on its own connection, exactly as written; the answer read to the close. */
async function sendRaw(c: Case): Promise<Answer> {
  const body = typeof c.body === 'string' ? Buffer.from(c.body) : Buffer.from(c.body ?? new Uint8Array())
  const head = ['host: fuzz', 'connection: close', `content-length: ${body.length}`]
  for (const [name, value] of Object.entries(c.headers ?? {})) head.push(`${name}: ${value}`)
  // The request line as UTF-8 (raw unicode in a path), header values as Latin-1 (one byte per character).
  const request = Buffer.concat([Buffer.from(`${c.method} ${c.path} HTTP/1.1\r\n`), Buffer.from(head.join('\r\n') + '\r\n\r\n', 'latin1'), body])
  const text = await exchange(port, request)
  const split = text.indexOf('\r\n\r\n')
  const headers = text.slice(0, split).toLowerCase()
  let rest = text.slice(split + 4)
  if (headers.includes('transfer-encoding: chunked')) rest = dechunk(rest)
  return { status: Number(text.split(' ')[1]), body: Buffer.from(rest, 'latin1').toString('utf8') }
}

function dechunk(text: string): string {
  let out = ''
  for (let at = 0; ; ) {
    const eol = text.indexOf('\r\n', at)
    const size = parseInt(text.slice(at, eol), 16)
    if (!(size > 0)) return out
    out += text.slice(eol + 2, eol + 2 + size)
    at = eol + 4 + size
  }
}

/** Why an answer is wrong, or null: never a 5xx (the upstream is healthy), and every error in our envelope. */
function fault(c: Case, answer: Answer): string | null {
  if (answer.status >= 500 || !(answer.status >= 200)) return `status ${answer.status}: ${answer.body.slice(0, 300)}`
  // A stream that started fine must not end in an error event: the upstream never sends one here.
  if (answer.status < 300 && /^data: \{"error"/m.test(answer.body)) return `an error event in a ${answer.status} stream: ${answer.body.slice(-300)}`
  if (answer.status < 400 || c.method === 'HEAD') return null
  if (c.path.startsWith('/v1/messages')) {
    const body = (() => {
      try {
        return JSON.parse(answer.body)
      } catch {
        return null
      }
    })()
    const ok = body?.type === 'error' && typeof body.error?.type === 'string' && typeof body.error?.message === 'string' && Object.keys(body).length === 2
    return ok ? null : `a ${answer.status} that is not Anthropic's error envelope: ${answer.body.slice(0, 300)}`
  }
  try {
    validateSchema('ErrorResponse', JSON.parse(answer.body))
    return null
  } catch {
    return `a ${answer.status} that is not our error envelope: ${answer.body.slice(0, 300)}`
  }
}

const repro = (c: Case) => {
  const body = typeof c.body === 'string' ? c.body : c.body ? `<${c.body.length} bytes>` : ''
  return `${c.method} ${c.path.slice(0, 300)} headers=${JSON.stringify(c.headers ?? {}).slice(0, 300)} body=${body.slice(0, 300)}${body.length > 300 ? '…' : ''}`
}

async function check(c: Case) {
  let answer: Answer
  try {
    answer = await send(c)
  } catch (error) {
    throw new Error(`no answer (${error}) to ${repro(c)}`)
  }
  counts.cases++
  counts.byStatus.set(answer.status, (counts.byStatus.get(answer.status) ?? 0) + 1)
  const wrong = fault(c, answer)
  if (wrong) throw new Error(`${wrong}\n  repro: ${repro(c)}`)
}

/** `share × SCALE` cases in batches of BATCH, each batch with its own seed, /health checked after each. */
async function fuzz<T>(name: string, share: number, cases: fc.Arbitrary<T>, run: (value: T) => Promise<void>) {
  const runs = share * SCALE
  for (let batch = 0; batch * BATCH < runs; batch++) {
    const seed = (SEED + batch * 7919 + name.length * 104729) | 0
    await fc.assert(fc.asyncProperty(cases, run), { seed, numRuns: Math.min(BATCH, runs - batch * BATCH) })
    expect((await fetch(`${gw.origin}/health`)).status).toBe(200)
  }
}

// ── generators ───────────────────────────────────────────────────────────────────────────────────────────

const strings = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme', maxLength: 50 }), fc.constantFrom('', ' ', '\0', '\u2028', '\ud800', '🚀'.repeat(500)))
const numbers = fc.oneof(
  fc.double(),
  fc.integer(),
  fc.constantFrom(0, -0, -1, 1.5, 2 ** 53 + 2, Number.MAX_VALUE, -Number.MAX_VALUE, Number.MIN_VALUE, 1e21, 128, 129, 2 ** 31, 2 ** 32),
)
/** Any JSON value, unicode strings and odd numbers included. */
const anyJson: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, fc.constant(null), fc.boolean(), numbers, strings, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 5 }),
  object: fc.dictionary(strings, tie('value'), { maxKeys: 5 }),
})).value
/** Numbers JSON can write but JavaScript cannot hold: huge, tiny, long. */
const rawNumbers = fc.constantFrom('1e999', '-1e999', '1e-999', '123456789012345678901234567890', '0.' + '1'.repeat(400), '1' + '0'.repeat(400), '-0', '1E+2')

const message = fc.record(
  { role: fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool'), content: fc.oneof(strings, fc.constant(null), fc.array(fc.record({ type: fc.constantFrom('text', 'image_url', 'x'), text: strings }), { maxLength: 3 })) },
  { requiredKeys: ['role'] },
)
const VALID = {
  chat: { model: 'm', messages: [{ role: 'user', content: 'Hi' }] },
  completions: { model: 'm', prompt: 'Say hi' },
  embeddings: { model: 'm', input: 'hello' },
  responses: { model: 'm', input: 'Hi' },
  messages: { model: 'm', max_tokens: 16, messages: [{ role: 'user', content: 'Hi' }] },
} as const
const FIELDS = {
  chat: ['model', 'messages', 'stream', 'stream_options', 'n', 'temperature', 'top_p', 'max_tokens', 'max_completion_tokens', 'user', 'tools', 'tool_choice',
    'stop', 'seed', 'logit_bias', 'logprobs', 'top_logprobs', 'response_format', 'presence_penalty', 'frequency_penalty', 'parallel_tool_calls', 'functions', 'api_base'],
  completions: ['model', 'prompt', 'stream', 'stream_options', 'n', 'temperature', 'top_p', 'max_tokens', 'user', 'echo', 'suffix', 'best_of', 'logprobs', 'stop'],
  embeddings: ['model', 'input', 'encoding_format', 'dimensions', 'user'],
  responses: ['model', 'input', 'instructions', 'tools', 'tool_choice', 'parallel_tool_calls', 'text', 'reasoning', 'max_output_tokens', 'temperature',
    'top_p', 'metadata', 'user', 'store', 'previous_response_id', 'stream'],
  messages: ['model', 'messages', 'system', 'tools', 'tool_choice', 'stop_sequences', 'max_tokens', 'temperature', 'top_p', 'top_k', 'thinking', 'metadata',
    'stream'],
} as const
type V1 = keyof typeof VALID
const V1_PATH: Record<V1, string> = {
  chat: '/v1/chat/completions',
  completions: '/v1/completions',
  embeddings: '/v1/embeddings',
  responses: '/v1/responses',
  messages: '/v1/messages',
}
/** The generated part of a body beyond one wrong field: the conversation, in each protocol's shape (`model` is added after). */
const inputItem = fc.oneof(
  message,
  fc.record({ type: fc.constantFrom('message', 'function_call', 'function_call_output', 'item_reference', 'reasoning', 'x'), role: strings, content: anyJson, call_id: strings, name: strings, arguments: strings, output: anyJson, id: strings }, { requiredKeys: ['type'] }),
)
const block = fc.record({ type: fc.constantFrom('text', 'image', 'tool_use', 'tool_result', 'thinking', 'document', 'x'), text: strings, id: strings, name: strings, input: anyJson, tool_use_id: strings, content: anyJson, source: anyJson }, { requiredKeys: ['type'] })
const anthropicMessage = fc.record({ role: fc.constantFrom('user', 'assistant', 'system', 'x'), content: fc.oneof(strings, fc.array(block, { maxLength: 3 })) }, { requiredKeys: ['role'] })
const CONVERSATION: Record<V1, fc.Arbitrary<Record<string, unknown>>> = {
  chat: fc.record({ messages: fc.array(message, { maxLength: 4 }), stream: fc.boolean(), n: fc.option(fc.integer({ min: 1, max: 3 })) }),
  completions: anyJson.map((prompt) => ({ ...VALID.completions, prompt })),
  embeddings: anyJson.map((input) => ({ ...VALID.embeddings, input })),
  responses: fc.record({ input: fc.oneof(strings, fc.array(inputItem, { maxLength: 4 })), stream: fc.boolean() }),
  messages: fc.record({ messages: fc.array(anthropicMessage, { maxLength: 4 }), stream: fc.boolean() }).map((b) => ({ max_tokens: 16, ...b })),
}

/** Nesting as deep as a few thousand levels, in a field the schema does not know, as arrays or objects. */
const deep = (depth: number, objects: boolean) => (objects ? '{"a":'.repeat(depth) + '1' + '}'.repeat(depth) : '['.repeat(depth) + ']'.repeat(depth))
const deepField = (base: object) =>
  fc.record({ depth: fc.integer({ min: 1, max: 5000 }), objects: fc.boolean() }).map(({ depth, objects }) => JSON.stringify(base).replace(/}$/, `,"extra":${deep(depth, objects)}}`))

/** A body for `endpoint`: random JSON, random text or bytes, a valid body with one field wrong, huge numbers, deep nesting. */
const v1Body = (endpoint: V1): fc.Arbitrary<string | Uint8Array> =>
  fc.oneof(
    anyJson.map((v) => healthy(JSON.stringify(v))),
    strings,
    fc.uint8Array({ maxLength: 200 }),
    fc.record({ field: fc.constantFrom(...FIELDS[endpoint]), value: anyJson }).map(({ field, value }) => healthy(JSON.stringify({ ...VALID[endpoint], [field]: value }))),
    fc.record({ field: fc.constantFrom(...FIELDS[endpoint]), value: rawNumbers }).map(({ field, value }) => healthy(JSON.stringify({ ...VALID[endpoint], [field]: 0 }).replace(`"${field}":0`, `"${field}":${value}`))),
    CONVERSATION[endpoint].map((b) => healthy(JSON.stringify({ model: 'm', ...b }))),
    deepField(VALID[endpoint]),
  )

const v1Cases = (endpoint: V1) =>
  fc.record({ body: v1Body(endpoint), contentType: fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', '') }).map(
    ({ body, contentType }): Case => ({
      method: 'POST',
      path: V1_PATH[endpoint],
      headers: { authorization: `Bearer ${key}`, ...(contentType ? { 'content-type': contentType } : {}) },
      body,
    }),
  )

/** Admin bodies are named `fz-…` so that no case renames, reroutes or deletes what the /v1 cases use. */
const ADMIN_VALID = {
  providers: () => ({ name: 'fz-p', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' }),
  models: () => ({ name: 'fz-m', targets: [{ provider: 'fake', model: 'gpt-4o' }], limits: { rpm: 10 }, routing: { strategy: 'weighted', retries: 1 } }),
  keys: () => ({ name: 'fz-k', allowed_models: ['m'], rpm: 10, budget: { usd: 1, period: 'daily' }, expires_at: '2099-01-01T00:00:00Z', metadata: {} }),
}
type AdminKind = keyof typeof ADMIN_VALID
const ADMIN_FIELDS: Record<AdminKind, string[]> = {
  providers: ['name', 'type', 'base_url', 'api_key', 'options'],
  models: ['name', 'targets', 'limits', 'routing'],
  keys: ['name', 'allowed_models', 'allowed_endpoints', 'rpm', 'rpd', 'tpm', 'max_parallel', 'budget', 'expires_at', 'metadata'],
}
const fzName = (value: unknown) => (typeof value === 'string' ? `fz-${value}` : value)

const adminCases = fc
  .record({
    kind: fc.constantFrom<AdminKind>('providers', 'models', 'keys'),
    method: fc.constantFrom('POST', 'PATCH'),
    id: fc.string({ unit: 'grapheme', maxLength: 20 }),
    field: fc.nat(),
    value: anyJson,
    mode: fc.constantFrom('field', 'field', 'whole', 'text', 'deep'),
    depth: fc.integer({ min: 1, max: 3000 }),
  })
  // Always the master key: a few wrong ones lock the whole address out (429), which would end the run's coverage.
  .map(({ kind, method, id, field, value, mode, depth }): Case => {
    const base: Record<string, unknown> = ADMIN_VALID[kind]()
    const name = ADMIN_FIELDS[kind][field % ADMIN_FIELDS[kind].length]!
    let body: string
    if (mode === 'whole') body = JSON.stringify(value)
    else if (mode === 'text') body = JSON.stringify({ ...base, [name]: value }).slice(0, -1) // cut short
    else if (mode === 'deep') body = JSON.stringify(base).replace(/}$/, `,"metadata":${deep(depth, true)}}`)
    else body = JSON.stringify({ ...base, [name]: name === 'name' ? fzName(value) : value })
    const path = method === 'POST' ? `/admin/v1/${kind}` : `/admin/v1/${kind}/${encodeURIComponent(`fz-${id}`)}`
    return { method, path, headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' }, body }
  })

/** Header values a client can send: visible ASCII and Latin-1, tabs and spaces, long (all of them within Bun's 16 KB), empty. */
const headerValue = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) }),
  fc.string({ unit: fc.integer({ min: 0xa0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 20 }),
  fc.constantFrom('', ' ', '\t', 'a'.repeat(2500), 'Bearer', 'Bearer ', 'Bearer  ', 'Basic Zm9vOmJhcg==', 'null', 'undefined', '[]', '{}'),
)
const headerName = fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/)
const headerCases = fc
  .record({
    authorization: fc.oneof(
      headerValue,
      headerValue.map((v) => `Bearer ${v}`),
      // The real key, well and badly presented (generated after beforeAll made it).
      fc.constantFrom('Bearer KEY', 'bearer  KEY', 'BEARER KEY', 'Bearer KEY ', 'Token KEY', 'Bearer KEYx', 'Bearer condt_', 'Bearer condt_' + 'A'.repeat(60)).map((v) => v.replace('KEY', key)),
    ),
    contentType: fc.oneof(headerValue, fc.constantFrom('application/json', 'application/json;charset=latin1', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded')),
    extra: fc.dictionary(
      fc.oneof(headerName, fc.constantFrom('x-api-key', 'api-key', 'content-encoding', 'accept', 'accept-encoding', 'x-request-id', 'openai-organization', 'expect', 'origin', 'range')),
      fc.oneof(headerValue, fc.constant(BROWSER_ORIGIN)),
      { maxKeys: 4 },
    ),
    endpoint: fc.constantFrom<V1>('chat', 'completions', 'embeddings'),
    stream: fc.boolean(),
  })
  .map(({ authorization, contentType, extra, endpoint, stream }): Case => ({
    method: 'POST',
    path: V1_PATH[endpoint],
    headers: { ...extra, authorization, 'content-type': contentType },
    body: JSON.stringify({ ...VALID[endpoint], ...(stream && endpoint !== 'embeddings' ? { stream } : {}) }),
    // Raw, so that values fetch would refuse or rewrite reach the gateway as written.
    raw: true,
  }))

/** A path segment: plain, percent-encoded (valid or not), a dot segment, raw unicode, or a known name. */
const hexByte = fc.integer({ min: 0, max: 255 }).map((b) => '%' + b.toString(16).padStart(2, '0'))
const segment = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._~!$&'()*+,;=:@-]{0,12}$/),
  fc.array(hexByte, { minLength: 1, maxLength: 4 }).map((bytes) => bytes.join('')),
  fc.constantFrom('.', '..', '%2e', '%2e%2e', '%2E%2E', '%', '%Z', '%ZZ', '%c3', '%C3%28', '%ED%A0%80', '%F4%90%80%80', '%00', '', 'm', 'chat', 'completions', 'keys', 'models', 'usage'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 4 }).map((s) => s.replace(/[\s\x00-\x1f\x7f#?]/g, 'x')),
)
const pathCases = fc
  .record({
    method: fc.constantFrom('GET', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'),
    prefix: fc.constantFrom('', '/v1', '/v1/models', '/v1/chat', '/v1/conduit', '/admin/v1', '/admin/v1/keys', '/admin/v1/models', '/admin/v1/providers', '/health', '/metrics'),
    segments: fc.array(segment, { maxLength: 4 }),
    query: fc.option(fc.array(fc.oneof(segment, fc.constantFrom('from=%ZZ', 'to=-1', 'from=9999999999999', 'group_by=x', 'from=2024-13-45')), { maxLength: 3 }).map((q) => q.join('&'))),
    auth: fc.constantFrom('none', 'key', 'master'),
  })
  .map(({ method, prefix, segments, query, auth }): Case => ({
    method,
    path: (prefix + segments.map((s) => '/' + s).join('') || '/') + (query === null ? '' : `?${query}`),
    headers: auth === 'none' ? {} : { authorization: `Bearer ${auth === 'key' ? key : MASTER_KEY}`, 'content-type': 'application/json' },
    body: method === 'POST' || method === 'PATCH' || method === 'PUT' ? JSON.stringify(VALID.chat) : undefined,
    raw: true,
  }))

/**
 * Names an operator may give (bug 1: an en dash, an emoji, CR/LF in a provider or target-model name broke every
 * request after the upstream was called): a provider, a model routed to it and a call through /v1, each step < 500.
 */
const entityName = fc.oneof(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  fc.constantFrom('fake – prod', 'fixed-🚀', 'a\r\nb', 'x"y', 'ü', '\u2028', 'a b', 'a/b', '%41', '..', 'a'.repeat(128)),
)
const entityCases = fc
  .record({ provider: entityName, model: entityName, target: entityName, stream: fc.boolean(), endpoint: fc.constantFrom<V1>('chat', 'chat', 'completions', 'embeddings') })
  .map(({ provider, model, target, stream, endpoint }) => {
    const admin = (path: string, body: object): Case => ({
      method: 'POST',
      path: `/admin/v1/${path}`,
      headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    const call = (name: string): Case => ({
      method: 'POST',
      path: V1_PATH[endpoint],
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: healthy(JSON.stringify({ ...VALID[endpoint], model: name, ...(stream && endpoint !== 'embeddings' ? { stream } : {}) })),
    })
    // `fze-`, never `fz-…`: the admin cases make `fz-…` providers with a generated key or URL, and a name taken by
    // one of those (409 here) would route this call to it (seed 273253444: 'fz-p', a 401 from the upstream).
    return { steps: [admin('providers', { name: `fze-${provider}`, type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' }), admin('models', { name: `fze-${model}`, targets: [{ provider: `fze-${provider}`, model: target }] })], call: call(`fze-${model}`) }
  })

/**
 * Usage reports: `from`/`to` as dates or unix seconds, and the grouping and key parameters. Instants stay within what
 * a Date can format (years 1900–9999, 12 digits of seconds) until the two corpus entries about the edges are fixed;
 * then widen them (20 digits, fc.date() unbounded).
 */
const queryValue = fc.oneof(
  fc.stringMatching(/^\d{1,12}$/),
  fc.date({ min: new Date('1900-01-01'), max: new Date('9999-12-31'), noInvalidDate: false }).map((d) => (Number.isNaN(d.getTime()) ? 'Invalid Date' : d.toISOString())),
  fc.constantFrom('', '0', '-1', '1.5', '1e3', 'now', '2024-02-30', '2024-01-01', '2024-01-01T00:00:00+14:00', '+010000-01-01T00:00:00.000Z'),
  strings.map((v) => v.replace(/[\ud800-\udfff]/g, '')),
)
const usageCases = fc
  .record({
    admin: fc.boolean(),
    params: fc.array(fc.tuple(fc.constantFrom('from', 'to', 'key', 'group_by', 'model', 'from', 'to'), queryValue), { maxLength: 4 }),
  })
  .map(({ admin, params }): Case => ({
    method: 'GET',
    path: `${admin ? '/admin/v1/usage' : '/v1/conduit/usage'}?${new URLSearchParams(params)}`,
    headers: { authorization: `Bearer ${admin ? MASTER_KEY : key}` },
  }))

// ── past failures, replayed before any generated case ─────────────────────────────────────────────────

const chatWith = (extra: string) => `{"model":"m","messages":[{"role":"user","content":"x"}],"extra":${extra}}`
const CORPUS: { name: string; case: () => Case }[] = [
  { name: 'bug 5: /v1/models/%ZZ was a 500 before auth', case: () => ({ method: 'GET', path: '/v1/models/%ZZ', raw: true }) },
  { name: 'bug 5: an admin id that does not decode', case: () => ({ method: 'GET', path: '/admin/v1/keys/%E0%A4%A', headers: { authorization: `Bearer ${MASTER_KEY}` }, raw: true }) },
  {
    name: 'bug 4: 100,000 levels of nesting in a /v1 body',
    case: () => ({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: chatWith(deep(100_000, false)) }),
  },
  {
    name: 'bug 4: 100,000 levels of nesting in an admin body',
    case: () => ({ method: 'POST', path: '/admin/v1/keys', headers: { authorization: `Bearer ${MASTER_KEY}`, 'content-type': 'application/json' }, body: `{"name":"fz-deep","metadata":${deep(100_000, true)}}` }),
  },
  {
    name: 'usage: unix seconds past what a Date holds (was a RangeError and a 500)',
    case: () => ({ method: 'GET', path: '/v1/conduit/usage?to=99999999999999', headers: { authorization: `Bearer ${key}` } }),
  },
  {
    name: 'usage: the earliest date a Date holds, so that the default `from` fell before it (a 500)',
    case: () => ({ method: 'GET', path: '/admin/v1/usage?to=-271821-04-20T00:00:00.000Z', headers: { authorization: `Bearer ${MASTER_KEY}` } }),
  },
  {
    name: 'a body past the limit over Bun\'s old cap (was an empty 413)',
    case: () => ({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: new Uint8Array(4 * 1024 * 1024) }),
  },
  ...(['/v1/responses', '/v1/messages'] as const).map((path) => ({
    name: `a JSON null body to ${path} (was a 500)`,
    case: (): Case => ({ method: 'POST', path, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: 'null' }),
  })),
  {
    name: 'a Responses function_call_output whose parts are not objects (was a 500)',
    case: () => ({
      method: 'POST',
      path: '/v1/responses',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', input: [{ type: 'function_call_output', call_id: '', output: [null] }] }),
    }),
  },
]

describe('corpus of past failures', () => {
  for (const entry of CORPUS) test(entry.name, () => check(entry.case()), 30_000)
})

describe('generated cases (12,000 in all, 13,000 requests)', () => {
  test('chat completion bodies', () => fuzz('chat', 2000, v1Cases('chat'), check), 120_000)
  test('legacy completion bodies', () => fuzz('completions', 1000, v1Cases('completions'), check), 120_000)
  test('embedding bodies', () => fuzz('embeddings', 1000, v1Cases('embeddings'), check), 120_000)
  test('Responses API bodies', () => fuzz('responses', 1000, v1Cases('responses'), check), 120_000)
  test('Messages API bodies (errors in Anthropic\'s envelope)', () => fuzz('messages', 1000, v1Cases('messages'), check), 120_000)
  test('admin bodies', () => fuzz('admin', 1500, adminCases, check), 120_000)
  // Three requests per case: 1,500 requests.
  test('provider and model names, then a call', async () => {
    await fuzz('entities', 500, entityCases, async ({ steps, call }) => {
      for (const step of steps) await check(step)
      await check(call)
    })
  }, 120_000)
  test('headers', () => fuzz('headers', 2000, headerCases, check), 120_000)
  test('usage queries', () => fuzz('usage', 500, usageCases, check), 120_000)
  // Last: a virtual key on an admin path counts as a wrong master key, and enough of them lock the address out.
  test('paths', () => fuzz('paths', 1500, pathCases, check), 120_000)
  // Not a 5xx is not enough: a row the database refused (a cost that overflowed) showed only as an error line.
  test('the gateway logged no error along the way', () => expect(logs.lines).toEqual([]))
})
