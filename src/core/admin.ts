import { randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { Type as t, type Static, type TSchema } from '@sinclair/typebox'
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors'
import { LRUCache } from 'lru-cache'
import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import { KEY_ENDPOINTS, type KeyLimits, type Logger, type ProviderAdapter } from '../plugin-sdk/types.ts'
import { microsToUsd } from '../pricing/prices.ts'
import { scrubSecrets } from '../services/known-secrets.ts'
import { displayPrefix, generateVirtualKey, isWellFormedKey, lastFour, sha256, type SecretBox } from '../store/crypto.ts'
import type { RequestRecordRow } from '../store/request-records.ts'
import type { KeyRow, ModelRow, ProviderRow, RecordCursor, RequestRecordFilter, Store } from '../store/store.ts'
import { isUniqueViolation } from '../store/store.ts'
import { isMasked, maskCredentials, sealBaseURL } from '../store/secrets.ts'
import { openProvider, secretsOf } from './catalog.ts'
import { Attempt, RequestCtx } from './context.ts'
import { accountFor } from '../plugins/budget/accounts.ts'
import { UpstreamCall, timeoutsFor, upstreamError, type Timeouts } from './upstream.ts'
import type { EgressPolicy } from './egress.ts'
import { checkerOf, expectation, toParam } from './request-schemas.ts'
import { usageRange, usageReport } from './usage.ts'

/*
 * The admin contract (/admin/v1). Schemas are TypeBox so admin bodies and the config file are checked against
 * the very same shapes. Objects refuse fields they do not know (a typo such as `rmp` must not silently mean
 * "unlimited"); `options` and `metadata` stay free-form. Later capabilities add fields; none are renamed.
 */
const closed = { additionalProperties: false }
const Name = t.String({ minLength: 1, maxLength: 128 })
const Metadata = t.Record(t.String(), t.Unknown())
const ApiKey = t.String({ minLength: 1, maxLength: 8192 })
/** Upper bounds keep a slip of the keyboard (or a millisecond timestamp) from becoming a policy. */
const MAX_LIMIT = 1e9
/** 9999-12-31T23:59:59Z: the last second an ISO 8601 date can name. */
const MAX_UNIX_SECONDS = 253_402_300_799

const Milliseconds = t.Integer({ minimum: 1, maximum: 2_147_483_647 })
/** Deadlines of upstream calls (see timeoutsFor): the config file's defaults, and a provider's own `options.timeouts`. */
export const TimeoutsInput = t.Object({ connect_ms: t.Optional(Milliseconds), first_byte_ms: t.Optional(Milliseconds), idle_ms: t.Optional(Milliseconds) }, closed)

export const ProviderInput = t.Object(
  {
    name: Name,
    type: t.String({ minLength: 1, maxLength: 64 }),
    /** Checked by the egress policy (scheme, private addresses) rather than by a pattern, to say why. */
    base_url: t.Optional(t.Union([t.Null(), t.String({ minLength: 1, maxLength: 2048 })])),
    /** One key, or several used in turn (a key resting after a 429 is skipped). */
    api_key: t.Optional(t.Union([t.Null(), ApiKey, t.Array(ApiKey, { minItems: 1, maxItems: 64 })])),
    /** The provider type's own options (see its adapter), and the core's `timeouts`. */
    options: t.Optional(t.Object({ timeouts: t.Optional(TimeoutsInput) }, { additionalProperties: true })),
  },
  closed,
)
export const ProviderPatch = t.Partial(ProviderInput)

/** The provider's "Test": one tiny chat completion. Without `model`, the first model that routes to this provider names it. */
export const ProviderTestInput = t.Object({ model: t.Optional(t.String({ minLength: 1, maxLength: 256 })) }, closed)

const Price = t.Number({ minimum: 0, maximum: 1e6 })
/** USD per million tokens (per hour of audio, per million characters, per image where so named): see Price in the SDK. */
const PriceInput = t.Object(
  {
    input: Price,
    output: Price,
    cached_input: t.Optional(Price),
    cache_write: t.Optional(Price),
    input_audio: t.Optional(Price),
    output_audio: t.Optional(Price),
    audio_hour: t.Optional(Price),
    characters: t.Optional(Price),
    image: t.Optional(Price),
    images: t.Optional(t.Record(t.String({ minLength: 1, maxLength: 64 }), Price, { maxProperties: 64 })),
    input_image: t.Optional(Price),
    output_image: t.Optional(Price),
  },
  closed,
)
const TargetInput = t.Object(
  {
    provider: t.String({ minLength: 1, maxLength: 128 }),
    model: t.String({ minLength: 1, maxLength: 256 }),
    weight: t.Optional(t.Number({ minimum: 0, maximum: 1e6 })),
    priority: t.Optional(t.Integer({ minimum: -1e6, maximum: 1e6 })),
    /** USD per million tokens; overrides the list price for this target. */
    price: t.Optional(PriceInput),
  },
  closed,
)
/** A limit; null (or absent) is unlimited. */
const Limit = t.Optional(t.Union([t.Null(), t.Integer({ minimum: 1, maximum: MAX_LIMIT })]))
const RateLimitFields = { rpm: Limit, rpd: Limit, tpm: Limit, max_parallel: Limit, ipm: Limit }

export const ModelInput = t.Object(
  {
    name: Name,
    targets: t.Array(TargetInput, { minItems: 1, maxItems: 100 }),
    /** Shared by every key calling this model. */
    limits: t.Optional(t.Union([t.Null(), t.Object(RateLimitFields, closed)])),
    routing: t.Optional(
      t.Union([
        t.Null(),
        t.Object(
          {
            strategy: t.Optional(t.Union([t.Literal('weighted'), t.Literal('least-busy'), t.Literal('lowest-latency')])),
            retries: t.Optional(t.Integer({ minimum: 0, maximum: 5 })),
          },
          closed,
        ),
      ]),
    ),
  },
  closed,
)
export const ModelPatch = t.Partial(ModelInput)

/**
 * ISO 8601 date-time or unix seconds. A pattern rather than `format: 'date-time'`: formats exist only once
 * Elysia has registered them, and the config file is checked before Elysia loads.
 */
/** A date (midnight UTC) or a date-time with its zone. */
const IsoDateTime = t.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}(T\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?(Z|[+-]\\d{2}:\\d{2}))?$', description: 'an ISO 8601 date or date-time' })
const Expiry = t.Union([t.Null(), IsoDateTime, t.Integer({ minimum: 0 })])
const Budget = t.Object(
  { usd: t.Number({ exclusiveMinimum: 0, maximum: MAX_LIMIT }), period: t.Union([t.Literal('total'), t.Literal('daily'), t.Literal('monthly')]) },
  closed,
)
/**
 * What each distinct end user of a key (the request's `user` field) may use, on top of the key's own limits; a
 * request without `user` counts against the key alone.
 */
const UserLimits = t.Object({ rpm: Limit, rpd: Limit, tpm: Limit, budget: t.Optional(t.Union([t.Null(), Budget])) }, closed)
const keyFields = {
  name: Name,
  allowed_models: t.Optional(t.Union([t.Null(), t.Array(t.String({ minLength: 1, maxLength: 256 }), { maxItems: 1000 })])),
  allowed_endpoints: t.Optional(t.Union([t.Null(), t.Array(t.Union(KEY_ENDPOINTS.map((e) => t.Literal(e))))])),
  ...RateLimitFields,
  budget: t.Optional(t.Union([t.Null(), Budget])),
  user_limits: t.Optional(t.Union([t.Null(), UserLimits])),
  expires_at: t.Optional(Expiry),
  enabled: t.Optional(t.Boolean()),
  metadata: t.Optional(Metadata),
}
export const KeyInput = t.Object(keyFields, closed)
export const KeyPatch = t.Partial(KeyInput)
/** The config file may pin a key's plaintext (usually `${ENV_VAR}`) so deployments are reproducible. */
export const ConfigKeyInput = t.Object({ ...keyFields, key: t.Optional(t.String()) }, closed)

type ProviderInputT = Static<typeof ProviderInput>
type ModelInputT = Static<typeof ModelInput>
type KeyInputT = Static<typeof KeyInput>

// Reading admin bodies ----------------------------------------------------------------------------------

/** Deeper than any admin body needs; far below what would exhaust the stack anywhere downstream. */
export const MAX_JSON_DEPTH = 32

/**
 * Whether a parsed JSON value nests arrays and objects deeper than `max`. Iterative and stops at the first
 * level too deep, so 100,000 nested brackets cost 33 steps instead of a stack overflow.
 */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const pending: [unknown, number][] = [[value, 0]]
  for (let next = pending.pop(); next; next = pending.pop()) {
    const [node, depth] = next
    if (node === null || typeof node !== 'object') continue
    if (depth + 1 > max) return true
    for (const child of Array.isArray(node) ? node : Object.values(node)) pending.push([child, depth + 1])
  }
  return false
}


/**
 * Inside a union (`null` or an object, say) the variant that got furthest names the real problem, and a field it
 * does not know before anything else (a misspelled `period` is not a missing one).
 */
function deepest(error: ValueError): ValueError {
  if (error.type !== ValueErrorType.Union) return error
  let best = error
  for (const variant of error.errors) {
    for (const inner of variant) {
      const candidate = deepest(inner)
      if (candidate.type === ValueErrorType.ObjectAdditionalProperties) return candidate
      if (candidate.path.length > best.path.length) best = candidate
    }
  }
  return best
}

/** The error to tell of a value (an admin body, the config file): a field the schema does not know, else the first. */
export function mainError(errors: Iterable<ValueError>): ValueError {
  const found: ValueError[] = []
  for (const error of errors) {
    found.push(deepest(error))
    if (found.length === 100) break
  }
  return found.find((e) => e.type === ValueErrorType.ObjectAdditionalProperties) ?? found[0]!
}

/**
 * Validates a parsed admin body: 400 `unknown_parameter` naming a field the schema does not know, else the first
 * invalid or missing field.
 */
export function validateAdminBody<S extends TSchema>(schema: S, body: unknown): Static<S> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw badRequest('The request body must be a JSON object.', null, 'invalid_value')
  }
  if (nestsDeeperThan(body, MAX_JSON_DEPTH)) throw badRequest(`The request body nests deeper than ${MAX_JSON_DEPTH} levels.`, null, 'invalid_value')
  const check = checkerOf(schema)
  if (check.Check(body)) return body as Static<S>
  const first = mainError(check.Errors(body))
  const param = toParam(first.path)
  if (first.type === ValueErrorType.ObjectAdditionalProperties) {
    throw badRequest(`Unrecognized request argument supplied: '${param}'.`, param, 'unknown_parameter')
  }
  if (first.type === ValueErrorType.ObjectRequiredProperty) {
    throw badRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter')
  }
  throw badRequest(`Invalid value for '${param}': ${expectation(first)}.`, param || null, 'invalid_value')
}

// Admin authentication ----------------------------------------------------------------------------------

/** Wrong master keys one client address may send per window before it is locked out. */
const MAX_FAILURES = 10
const FAILURE_WINDOW_MS = 60_000
const LOCKOUT_MS = 60_000

/** A client address, with IPv6 clients grouped by /64 (one host usually owns a whole /64). */
function clientGroup(address: string | null): string {
  if (!address) return 'unknown'
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (mapped) return mapped[1]!
  if (isIP(address) !== 6) return address
  const [head = '', tail = ''] = address.toLowerCase().split('::')
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const words = address.includes('::') ? [...left, ...Array(8 - left.length - right.length).fill('0'), ...right] : left
  return `${words.slice(0, 4).map((w) => w.replace(/^0+(?=.)/, '')).join(':')}::/64`
}

/** Wrong admin keys told between the workers of one instance (by their primary). */
export interface FailureExchange {
  publish(client: string): void
  subscribe(listener: (client: string) => void): void
}

/**
 * The master-key check in front of every admin route, with a brute-force throttle: more than MAX_FAILURES wrong
 * keys from one address within a minute lock that address out for a minute (429 with Retry-After), the right key
 * included, so the lockout cannot serve as an oracle. A missing key is not a guess and is not counted. Memory is
 * bounded (LRU); behind a reverse proxy every client shares the proxy's address.
 */
export class AdminGuard {
  private readonly failures = new LRUCache<string, { count: number; since: number; lockedUntil: number }>({ max: 10_000 })

  constructor(
    private readonly isMasterKey: (token: string) => boolean,
    private readonly now: () => number = Date.now,
    /** The sibling workers, told of each wrong key (and telling theirs): the limit is the instance's, not N times it. */
    private readonly siblings?: FailureExchange,
  ) {
    siblings?.subscribe((client) => this.count(client))
  }

  authorize(authorization: string | null, clientAddress: string | null): void {
    this.refuseLockedOut(clientAddress)
    const token = /^Bearer\s+(.+)$/i.exec(authorization ?? '')?.[1]?.trim()
    if (!token) throw new GatewayError(401, 'The admin API needs "Authorization: Bearer <master key>".', { code: 'missing_api_key' })
    if (this.isMasterKey(token)) return
    this.countFailure(clientAddress)
    throw new GatewayError(401, 'Incorrect master key.', { code: 'invalid_api_key' })
  }

  /** 429 while the address is locked out (the Web UI's sign-in shares the count with the bearer check). */
  refuseLockedOut(clientAddress: string | null): void {
    const record = this.failures.get(clientGroup(clientAddress))
    const now = this.now()
    if (record && record.lockedUntil > now) throw this.lockedOut(record.lockedUntil - now)
  }

  /** One more wrong secret from the address; throws the 429 when that one locks it out. */
  countFailure(clientAddress: string | null): void {
    const client = clientGroup(clientAddress)
    this.siblings?.publish(client)
    if (this.count(client)) throw this.lockedOut(LOCKOUT_MS)
  }

  /** One more wrong secret from the client (here or on a sibling); true if the client is now locked out. */
  private count(client: string): boolean {
    const now = this.now()
    const record = this.failures.get(client)
    const current = record && now - record.since < FAILURE_WINDOW_MS ? record : { count: 0, since: now, lockedUntil: 0 }
    current.count++
    if (current.count > MAX_FAILURES) current.lockedUntil = now + LOCKOUT_MS
    this.failures.set(client, current)
    return current.lockedUntil > now
  }

  private lockedOut(ms: number) {
    return new GatewayError(429, 'Too many wrong master keys from this address; try again later.', {
      code: 'rate_limit_exceeded',
      headers: { 'retry-after': String(Math.ceil(ms / 1000)) },
    })
  }
}

// The service ---------------------------------------------------------------------------------------------

const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url')}`
const seconds = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000))
const notFound = (what: string, ref: string) => new GatewayError(404, `No ${what} '${ref}'.`, { code: 'not_found' })
const conflict = (message: string, param?: string) => new GatewayError(409, message, { code: 'conflict', param })

type NamedKind = 'provider' | 'model' | 'key'
const nameConflict = (kind: NamedKind, name: string) => conflict(`A ${kind} named '${name}' already exists.`, 'name')
/** A name taken between the check and the write (another call, another instance): the check's 409, not a 500. */
const nameTaken =
  (kind: NamedKind, name: string) =>
  (error: unknown): never => {
    throw isUniqueViolation(error) ? nameConflict(kind, name) : error
  }

const encodeCursor = (at: RecordCursor) => Buffer.from(`${at.createdAt}:${at.id}`).toString('base64url')
function decodeCursor(cursor: string) {
  const text = Buffer.from(cursor, 'base64url').toString()
  const colon = text.indexOf(':')
  const createdAt = Number(text.slice(0, colon))
  if (colon < 1 || !Number.isSafeInteger(createdAt)) throw badRequest("'cursor' is not one this API gave out.", 'cursor', 'invalid_value')
  return { createdAt, id: text.slice(colon + 1) }
}

/** `200`, `4xx`, `error` → an inclusive status range. */
function statusRange(status: string): [number, number] {
  if (status === 'error') return [400, 999]
  const cls = /^([1-5])xx$/i.exec(status)
  if (cls) return [Number(cls[1]) * 100, Number(cls[1]) * 100 + 99]
  if (/^[1-9]\d{2}$/.test(status)) return [Number(status), Number(status)]
  throw badRequest("'status' must be a status code, a class such as '5xx', or 'error'.", 'status', 'invalid_value')
}

/**
 * Limit fields of a create or patch body over the current limits: absent keeps, null removes. `user_limits` is
 * patched the same way, field by field.
 */
function limitsFrom(input: { [K in keyof KeyLimits]?: unknown }, current: KeyLimits | null): KeyLimits | null {
  const limits: Record<string, unknown> = { ...current }
  for (const name of ['rpm', 'rpd', 'tpm', 'max_parallel', 'ipm', 'budget', 'user_limits'] as const) {
    const value = input[name]
    if (value === null) delete limits[name]
    else if (name === 'user_limits' && value !== undefined) {
      const users = limitsFrom(value as KeyLimits, (current?.user_limits ?? null) as KeyLimits | null)
      if (users) limits[name] = users
      else delete limits[name]
    } else if (value !== undefined) limits[name] = value
  }
  return Object.keys(limits).length > 0 ? (limits as KeyLimits) : null
}

function parseExpiry(value: string | number | null | undefined): number | null {
  if (value === undefined || value === null) return null
  if (typeof value === 'number' && value > MAX_UNIX_SECONDS) {
    throw badRequest(
      `expires_at is in unix seconds; ${value} is after the year 9999 (a timestamp in milliseconds? divide it by 1000).`,
      'expires_at',
      'invalid_value',
    )
  }
  const ms = typeof value === 'number' ? value * 1000 : Date.parse(value)
  if (!Number.isFinite(ms)) throw badRequest('expires_at must be an ISO 8601 date-time or unix seconds.', 'expires_at', 'invalid_value')
  return ms
}

/** A base URL that carries the API's mask where its credential was: it would be stored as the password. */
const maskedURL = () => badRequest("base_url carries the masked credential '***': send the real one, or leave base_url out to keep it.", 'base_url', 'invalid_value')

/** Tries a change gets when others keep changing its row in between (each lost try means one of theirs was written). */
const CHANGE_TRIES = 10

/**
 * A PATCH: the row read, the patch applied, and written only if nobody changed the row in between; otherwise read
 * and applied again. Written whole from a stale read, the later of two PATCHes at once undid the earlier: a key
 * disabled on one instance while its rpm was changed on another stayed enabled.
 */
async function changeRow<Row>(read: () => Promise<Row>, apply: (row: Row) => Promise<Row>, write: (next: Row) => Promise<Row | null>): Promise<Row> {
  for (let tries = 0; tries < CHANGE_TRIES; tries++) {
    const written = await write(await apply(await read()))
    if (written) return written
  }
  throw conflict('This changed again while the change was being made, too many times: send it again.')
}

export class AdminService {
  constructor(
    private readonly store: Store,
    private readonly secrets: SecretBox,
    /** The provider adapters plugins registered, by type. */
    private readonly providers: ReadonlyMap<string, ProviderAdapter>,
    /** Decides which base URLs may be configured. */
    private readonly egress: EgressPolicy,
  ) {}

  // Views: what the API returns. Secrets never appear (nor credentials in a base URL); providers show the
  // key's last four characters.

  providerView = (p: ProviderRow) => ({
    id: p.id,
    object: 'provider',
    name: p.name,
    type: p.type,
    base_url: maskCredentials(p.baseURL), // masked when stored, unless from before the credential was sealed
    api_key_last4: p.apiKeyLast4,
    options: p.options,
    created_at: seconds(p.createdAt),
    updated_at: seconds(p.updatedAt),
  })

  modelView = (m: ModelRow) => ({
    id: m.id,
    object: 'model_mapping',
    name: m.name,
    targets: m.targets,
    limits: m.limits,
    routing: m.routing ?? null,
    created_at: seconds(m.createdAt),
    updated_at: seconds(m.updatedAt),
  })

  keyView = (k: KeyRow) => ({
    id: k.id,
    object: 'virtual_key',
    name: k.name,
    key_prefix: k.keyPrefix,
    key_last4: k.keyLast4,
    allowed_models: k.allowedModels,
    allowed_endpoints: k.allowedEndpoints,
    rpm: k.limits?.rpm ?? null,
    rpd: k.limits?.rpd ?? null,
    tpm: k.limits?.tpm ?? null,
    max_parallel: k.limits?.max_parallel ?? null,
    ipm: k.limits?.ipm ?? null,
    budget: k.limits?.budget ?? null,
    user_limits: k.limits?.user_limits ?? null,
    expires_at: seconds(k.expiresAt),
    enabled: k.enabled,
    metadata: k.metadata,
    created_at: seconds(k.createdAt),
    updated_at: seconds(k.updatedAt),
  })

  /** Spend over a range: totals by key, model, provider, day and end user (optionally for one key). */
  async usage(params: URLSearchParams) {
    const ref = params.get('key')
    // A deleted key is known by its id alone: its spend stays in the ledger, and the report lists it by that id.
    const key = ref ? ((await this.findKey(ref)) ?? (ref.startsWith('key_') ? { id: ref } : null)) : null
    if (ref && !key) throw notFound('key', ref)
    const report = await usageReport(this.store, usageRange(params), key?.id ?? null, ['key', 'model', 'provider', 'day', 'user'])
    // Each key by the name the pages show, beside its id (null for a key deleted since).
    const names = await this.keyNames()
    const byKey = report.by_key as Record<string, unknown>[]
    return { ...report, by_key: byKey.map((row) => ({ ...row, name: names.get(row.key as string) ?? null })) }
  }

  // Providers ------------------------------------------------------------------------------------------

  /** The provider types plugins registered, for a form's choice: each with its default address, if it has one. */
  providerTypes() {
    const data = [...this.providers.values()]
      .map((p) => ({ id: p.id, object: 'provider_type', default_base_url: p.defaultBaseURL ?? null }))
      .sort((a, b) => a.id.localeCompare(b.id))
    return { object: 'list', data }
  }

  private adapter(type: string): ProviderAdapter {
    const adapter = this.providers.get(type)
    if (!adapter) throw badRequest(`Unknown provider type '${type}'. Known types: ${[...this.providers.keys()].sort().join(', ')}.`, 'type')
    return adapter
  }

  /** Refuses what cannot work: no address at all, or one the egress policy would refuse at every call. */
  private checkBaseURL(type: string, baseURL: string | null) {
    const fallback = this.adapter(type).defaultBaseURL
    const url = baseURL ?? fallback
    if (!url) throw badRequest(`A provider of type '${type}' has no default address: base_url is required.`, 'base_url', 'missing_required_parameter')
    const refusal = this.egress.refusal(url)
    if (!refusal) return
    const subject = baseURL ? 'base_url' : `The default address of the provider type '${type}' (${fallback})`
    throw badRequest(`${subject} ${refusal.message}`, 'base_url', refusal.code)
  }

  /** A clear 409 before the write; the database's constraint decides a race (see nameTaken). */
  private async uniqueName(kind: NamedKind, name: string, selfId?: string) {
    let existing: ({ id: string } | null)[]
    if (kind === 'key') existing = await this.store.findKeys(name)
    else existing = [kind === 'provider' ? await this.store.getProvider(name) : await this.store.getModel(name)]
    if (existing.some((row) => row && row.id !== selfId)) throw nameConflict(kind, name)
  }

  /** Several keys are sealed as one JSON array; the view shows the last four characters of each. */
  private seal(id: string, apiKey: string | string[] | null | undefined) {
    if (!apiKey) return { apiKeySecret: null, apiKeyLast4: null }
    const plain = Array.isArray(apiKey) ? JSON.stringify(apiKey) : apiKey
    const last4 = Array.isArray(apiKey) ? apiKey.map(lastFour).join(',') : lastFour(apiKey)
    return { apiKeySecret: this.secrets.encrypt(plain, `provider:${id}`), apiKeyLast4: last4 }
  }

  async createProvider(input: ProviderInputT) {
    if (input.base_url && isMasked(input.base_url)) throw maskedURL()
    this.checkBaseURL(input.type, input.base_url ?? null)
    await this.uniqueName('provider', input.name)
    const id = newId('prov')
    const row = await this.store.insertProvider({
      id,
      name: input.name,
      type: input.type,
      ...sealBaseURL(this.secrets, id, input.base_url ?? null),
      ...this.seal(id, input.api_key),
      options: input.options ?? {},
    }).catch(nameTaken('provider', input.name))
    return this.providerView(row)
  }

  async listProviders() {
    return { object: 'list', data: (await this.store.listProviders()).map(this.providerView) }
  }

  async getProvider(ref: string) {
    const row = await this.store.getProvider(ref)
    if (!row) throw notFound('provider', ref)
    return row
  }

  async updateProvider(ref: string, patch: Partial<ProviderInputT>) {
    const written = await changeRow(
      () => this.getProvider(ref),
      async (row) => {
        // The API shows a credential in a base URL masked, and a form sends back what it was shown: as it was shown,
        // it changes nothing; a URL with the mask in place of a password would store the mask as the password.
        if (patch.base_url && patch.base_url === row.baseURL && row.baseURLSecret) patch = { ...patch, base_url: undefined }
        else if (patch.base_url && isMasked(patch.base_url)) throw maskedURL()
        // A row stored before a check existed stays editable; what the patch changes is checked.
        if (patch.type !== undefined || patch.base_url !== undefined) {
          this.checkBaseURL(patch.type ?? row.type, patch.base_url === undefined ? row.baseURL : patch.base_url)
        }
        if (patch.name !== undefined) await this.uniqueName('provider', patch.name, row.id)
        return {
          ...row,
          name: patch.name ?? row.name,
          type: patch.type ?? row.type,
          ...(patch.base_url === undefined ? {} : sealBaseURL(this.secrets, row.id, patch.base_url)),
          options: patch.options ?? row.options,
          ...(patch.api_key === undefined ? {} : this.seal(row.id, patch.api_key)),
        }
      },
      (next) => this.store.updateProvider(next).catch(nameTaken('provider', next.name)),
    )
    return this.providerView(written)
  }

  async deleteProvider(ref: string) {
    const row = await this.getProvider(ref)
    const users = (await this.store.listModels()).filter((m) => m.targets.some((t) => t.provider === row.id))
    if (users.length > 0) {
      throw conflict(`Provider '${row.name}' is used by the models ${users.map((m) => `'${m.name}'`).join(', ')}; change them first.`)
    }
    await this.store.deleteProvider(row.id)
    return { id: row.id, object: 'provider', deleted: true }
  }

  // Models ---------------------------------------------------------------------------------------------

  /** Targets may name providers by id or name; we store ids so renaming a provider never breaks a model. */
  private async resolveTargets(targets: ModelInputT['targets']) {
    return Promise.all(
      targets.map(async (target, i) => {
        const provider = await this.store.getProvider(target.provider)
        if (!provider) throw badRequest(`Unknown provider '${target.provider}'.`, `targets[${i}].provider`, 'invalid_value')
        return {
          provider: provider.id,
          model: target.model,
          weight: target.weight ?? 1,
          priority: target.priority ?? 0,
          ...(target.price ? { price: target.price } : {}),
        }
      }),
    )
  }

  async createModel(input: ModelInputT) {
    await this.uniqueName('model', input.name)
    const row = await this.store.insertModel({
      id: newId('model'),
      name: input.name,
      targets: await this.resolveTargets(input.targets),
      limits: input.limits ? limitsFrom(input.limits, null) : null,
      routing: input.routing ?? null,
    }).catch(nameTaken('model', input.name))
    return this.modelView(row)
  }

  async listModels() {
    return { object: 'list', data: (await this.store.listModels()).map(this.modelView) }
  }

  async getModel(ref: string) {
    const row = await this.store.getModel(ref)
    if (!row) throw notFound('model', ref)
    return row
  }

  async updateModel(ref: string, patch: Partial<ModelInputT>) {
    const written = await changeRow(
      () => this.getModel(ref),
      async (row) => {
        if (patch.name !== undefined) await this.uniqueName('model', patch.name, row.id)
        return {
          ...row,
          name: patch.name ?? row.name,
          targets: patch.targets ? await this.resolveTargets(patch.targets) : row.targets,
          limits: patch.limits === undefined ? row.limits : patch.limits && limitsFrom(patch.limits, row.limits),
          routing: patch.routing === undefined ? row.routing : patch.routing,
        }
      },
      (next) => this.store.updateModel(next).catch(nameTaken('model', next.name)),
    )
    return this.modelView(written)
  }

  async deleteModel(ref: string) {
    const row = await this.getModel(ref)
    await this.store.deleteModel(row.id)
    return { id: row.id, object: 'model_mapping', deleted: true }
  }

  /**
   * Sends the provider one tiny chat completion (`max_tokens: 1`) with its stored credentials, outside any
   * model, key or ledger: the answer is how long it took, or the provider's error in our words.
   */
  async testProvider(ref: string, model: string | undefined, timeouts: Timeouts, log: Logger) {
    const row = await this.getProvider(ref)
    const adapter = this.adapter(row.type).chat
    if (!adapter) throw badRequest(`Provider type '${row.type}' has no chat endpoint to test with.`, 'type', 'unsupported_endpoint')
    const upstreamModel =
      model ?? (await this.store.listModels()).flatMap((m) => m.targets).find((target) => target.provider === row.id)?.model
    if (!upstreamModel) throw badRequest('No model routes to this provider yet: name the upstream model to test with.', 'model', 'missing_required_parameter')
    const provider = openProvider(this.secrets, row)
    const ctx = new RequestCtx('chat', 'chat', new Request('http://conduit.invalid/admin/v1/providers/test', { method: 'POST' }), log)
    ctx.body = { model: upstreamModel, messages: [{ role: 'user', content: 'ping' }], max_tokens: 1 }
    const attempt = new Attempt(ctx, { provider, model: upstreamModel, price: null }, 1)
    const started = performance.now()
    const elapsed = () => Math.round((performance.now() - started) * 10) / 10
    const call = new UpstreamCall(ctx.signal, provider.name)
    // The provider's own text may quote the key it was sent: scrubbed by value as well as by shape.
    const scrub = (text: string) => secretsOf(provider).reduce((out, key) => (key.length >= 4 ? out.replaceAll(key, '[REDACTED]') : out), scrubSecrets(text))
    try {
      const upstream = await adapter.buildRequest(ctx.body, attempt)
      const response = await call.fetch(upstream, timeoutsFor(provider, timeouts))
      if (!response.ok) {
        const error = await upstreamError(response, adapter, provider.name)
        return { object: 'provider_test', ok: false, model: upstreamModel, status: response.status, latency_ms: elapsed(), error: { message: scrub(error.message), code: error.code ?? null } }
      }
      await response.arrayBuffer()
      return { object: 'provider_test', ok: true, model: upstreamModel, status: response.status, latency_ms: elapsed(), error: null }
    } catch (error) {
      const failure = GatewayError.is(error) ? error : new GatewayError(502, `Could not reach the provider '${provider.name}'.`, { code: 'upstream_unreachable' })
      return { object: 'provider_test', ok: false, model: upstreamModel, status: failure.status, latency_ms: elapsed(), error: { message: scrub(failure.message), code: failure.code ?? null } }
    } finally {
      call.release()
    }
  }

  // Request records -------------------------------------------------------------------------------------

  recordView = (r: RequestRecordRow, keyNames: Map<string, string>) => ({
    id: r.request_id,
    object: 'request_record',
    created_at: r.created_at / 1000,
    key_id: r.key_id,
    key_name: r.key_id ? (keyNames.get(r.key_id) ?? null) : null,
    endpoint: r.endpoint,
    model: r.model,
    provider: r.provider,
    upstream_model: r.upstream_model,
    status: r.status,
    error_code: r.error_code,
    stream: r.stream === 1,
    aborted: r.aborted === 1,
    attempts: r.attempts,
    latency_ms: r.latency_ms,
    ttft_ms: r.ttft_ms,
    prompt_tokens: r.prompt_tokens,
    completion_tokens: r.completion_tokens,
    cost_usd: microsToUsd(r.cost_micros),
    estimated: r.estimated === 1,
    user: r.end_user,
    client_ip: r.client_ip,
    request_body: r.request_body,
  })

  private async keyNames() {
    return new Map((await this.store.listKeys()).map((k) => [k.id, k.name]))
  }

  /**
   * `GET /admin/v1/requests`: newest first, `limit` (1-200, default 50) per page; `next_cursor` asks for the
   * next page. Filters: `key` (id or name), `model`, `provider`, `user`, `status` (a code, `2xx`/`4xx`/`5xx`, or
   * `error`), `from`/`to` (ISO or unix seconds). `scopeKeyId` pins the key (a virtual-key session).
   */
  async requests(params: URLSearchParams, scopeKeyId: string | null = null) {
    const filter: RequestRecordFilter = {}
    const text = (name: string) => {
      const value = params.get(name)
      return value === null || value === '' ? undefined : value
    }
    const keyRef = text('key')
    if (scopeKeyId) filter.keyId = scopeKeyId
    else if (keyRef) filter.keyId = (await this.findKey(keyRef))?.id ?? keyRef
    filter.model = text('model')
    filter.provider = text('provider')
    filter.user = text('user')
    const status = text('status')
    if (status !== undefined) filter.status = statusRange(status)
    for (const name of ['from', 'to'] as const) {
      const raw = text(name)
      if (raw === undefined) continue
      const ms = /^\d+$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw)
      if (!Number.isFinite(ms)) throw badRequest(`'${name}' must be an ISO 8601 date or unix seconds.`, name)
      filter[name] = ms
    }
    const rawLimit = text('limit') ?? '50'
    const limit = Number(rawLimit)
    if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw badRequest("'limit' must be an integer from 1 to 200.", 'limit')
    const cursor = text('cursor')
    if (cursor !== undefined) filter.before = decodeCursor(cursor)
    const { rows, scannedTo } = await this.store.listRequestRecords(filter, limit + 1)
    const page = rows.slice(0, limit)
    const names = await this.keyNames()
    const last = page.at(-1)
    // A filter that matched little of what one page examines may give a short (even empty) page, and more to come.
    const next = rows.length > limit && last ? { createdAt: last.created_at, id: last.request_id } : scannedTo
    return {
      object: 'list',
      data: page.map((r) => this.recordView(r, names)),
      has_more: next !== null,
      next_cursor: next ? encodeCursor(next) : null,
    }
  }

  /** One record, its stored body included; a virtual-key session sees only its own. */
  async request(id: string, scopeKeyId: string | null = null) {
    const row = await this.store.getRequestRecord(id)
    if (!row || (scopeKeyId && row.key_id !== scopeKeyId)) throw notFound('request', id)
    return this.recordView(row, await this.keyNames())
  }

  // Virtual keys ---------------------------------------------------------------------------------------

  /** The only response that carries the plaintext key. */
  async createKey(input: KeyInputT, plaintext?: string) {
    const key = plaintext ?? generateVirtualKey()
    if (!isWellFormedKey(key)) throw badRequest('A configured key must be a well-formed condt_ key.', 'key')
    await this.uniqueName('key', input.name)
    const row = await this.store.insertKey(
      {
        id: newId('key'),
        name: input.name,
        enabled: input.enabled ?? true,
        expiresAt: parseExpiry(input.expires_at),
        allowedModels: input.allowed_models ?? null,
        allowedEndpoints: input.allowed_endpoints ?? null,
        limits: limitsFrom(input, null),
        metadata: input.metadata ?? {},
        keyPrefix: displayPrefix(key),
        keyLast4: lastFour(key),
      },
      sha256(key),
    ).catch(nameTaken('key', input.name))
    return { ...this.keyView(row), key }
  }

  async listKeys() {
    return { object: 'list', data: (await this.store.listKeys()).map(this.keyView) }
  }

  /**
   * The keys list with what the Keys page shows beside each: when it was last used (its newest request record)
   * and what it spent in its budget's current period (only keys that have a budget). A key's own session sees only
   * its key, and only that key's activity is read.
   */
  async listKeysWithActivity(onlyKeyId: string | null = null) {
    const rows = (await this.store.listKeys()).filter((k) => onlyKeyId === null || k.id === onlyKeyId)
    const data = await Promise.all(
      rows.map(async (k) => {
        const budget = k.limits?.budget
        const spent = budget ? await this.store.spentMicros(k.id, accountFor(budget).since) : null
        const used = await this.store.lastUsedAt(k.id)
        return { ...this.keyView(k), last_used_at: used === null ? null : Math.floor(used / 1000), budget_spent_usd: spent === null ? null : microsToUsd(spent) }
      }),
    )
    return { object: 'list', data }
  }

  /** By id, else by name (unique); null when neither matches. */
  async findKey(ref: string): Promise<KeyRow | null> {
    const rows = await this.store.findKeys(ref)
    return rows.find((row) => row.id === ref) ?? rows[0] ?? null
  }

  async getKey(ref: string) {
    const row = await this.findKey(ref)
    if (!row) throw notFound('key', ref)
    return row
  }

  async updateKey(ref: string, patch: Partial<KeyInputT>) {
    const written = await changeRow(
      () => this.getKey(ref),
      async (row) => {
        if (patch.name !== undefined) await this.uniqueName('key', patch.name, row.id)
        return {
          ...row,
          name: patch.name ?? row.name,
          enabled: patch.enabled ?? row.enabled,
          expiresAt: patch.expires_at === undefined ? row.expiresAt : parseExpiry(patch.expires_at),
          allowedModels: patch.allowed_models === undefined ? row.allowedModels : patch.allowed_models,
          allowedEndpoints: patch.allowed_endpoints === undefined ? row.allowedEndpoints : patch.allowed_endpoints,
          limits: limitsFrom(patch, row.limits),
          metadata: patch.metadata ?? row.metadata,
        }
      },
      (next) => this.store.updateKey(next).catch(nameTaken('key', next.name)),
    )
    return this.keyView(written)
  }

  async deleteKey(ref: string) {
    const row = await this.getKey(ref)
    await this.store.deleteKey(row.id)
    return { id: row.id, object: 'virtual_key', deleted: true }
  }
}
