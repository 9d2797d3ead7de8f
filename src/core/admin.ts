import { randomBytes } from 'node:crypto'
import { Type as t, type Static } from '@sinclair/typebox'
import { GatewayError, badRequest } from '../plugin-sdk/errors.ts'
import type { KeyLimits } from '../plugin-sdk/types.ts'
import { displayPrefix, generateVirtualKey, isWellFormedKey, lastFour, sha256, type SecretBox } from '../store/crypto.ts'
import type { KeyRow, ModelRow, ProviderRow, Store } from '../store/store.ts'
import { usageRange, usageReport } from './usage.ts'

/*
 * The admin contract (/admin/v1). Schemas are TypeBox so the HTTP layer validates with them and the config
 * file is checked against the very same shapes. Later capabilities add fields; none are renamed.
 */
const Name = t.String({ minLength: 1, maxLength: 128 })
const Metadata = t.Record(t.String(), t.Unknown())

export const ProviderInput = t.Object({
  name: Name,
  type: t.String({ minLength: 1 }),
  base_url: t.Optional(t.Union([t.Null(), t.String({ pattern: '^https?://' })])),
  /** One key, or several used in turn (a key resting after a 429 is skipped). */
  api_key: t.Optional(t.Union([t.Null(), t.String({ minLength: 1 }), t.Array(t.String({ minLength: 1 }), { minItems: 1, maxItems: 64 })])),
  options: t.Optional(Metadata),
})
export const ProviderPatch = t.Partial(ProviderInput)

const PriceInput = t.Object({ input: t.Number({ minimum: 0 }), output: t.Number({ minimum: 0 }), cached_input: t.Optional(t.Number({ minimum: 0 })) })
const TargetInput = t.Object({
  provider: t.String({ minLength: 1 }),
  model: t.String({ minLength: 1 }),
  weight: t.Optional(t.Number({ minimum: 0 })),
  priority: t.Optional(t.Integer()),
  /** USD per million tokens; overrides the list price for this target. */
  price: t.Optional(PriceInput),
})
/** A limit; null (or absent) is unlimited. */
const Limit = t.Optional(t.Union([t.Null(), t.Integer({ minimum: 1 })]))
const RateLimitFields = { rpm: Limit, rpd: Limit, tpm: Limit, max_parallel: Limit }

export const ModelInput = t.Object({
  name: Name,
  targets: t.Array(TargetInput, { minItems: 1 }),
  /** Shared by every key calling this model. */
  limits: t.Optional(t.Union([t.Null(), t.Object(RateLimitFields, { additionalProperties: false })])),
  routing: t.Optional(
    t.Union([
      t.Null(),
      t.Object(
        {
          strategy: t.Optional(t.Union([t.Literal('weighted'), t.Literal('least-busy'), t.Literal('lowest-latency')])),
          retries: t.Optional(t.Integer({ minimum: 0, maximum: 5 })),
        },
        { additionalProperties: false },
      ),
    ]),
  ),
})
export const ModelPatch = t.Partial(ModelInput)

/** ISO 8601 string or unix seconds. */
const Expiry = t.Union([t.Null(), t.String({ format: 'date-time' }), t.Integer({ minimum: 0 })])
const Budget = t.Object(
  { usd: t.Number({ exclusiveMinimum: 0 }), period: t.Union([t.Literal('total'), t.Literal('daily'), t.Literal('monthly')]) },
  { additionalProperties: false },
)
export const ENDPOINTS = ['chat', 'completions', 'embeddings'] as const
export const KeyInput = t.Object({
  name: Name,
  allowed_models: t.Optional(t.Union([t.Null(), t.Array(t.String({ minLength: 1 }))])),
  allowed_endpoints: t.Optional(t.Union([t.Null(), t.Array(t.Union(ENDPOINTS.map((e) => t.Literal(e))))])),
  ...RateLimitFields,
  budget: t.Optional(t.Union([t.Null(), Budget])),
  expires_at: t.Optional(Expiry),
  enabled: t.Optional(t.Boolean()),
  metadata: t.Optional(Metadata),
})
export const KeyPatch = t.Partial(KeyInput)
/** The config file may pin a key's plaintext (usually `${ENV_VAR}`) so deployments are reproducible. */
export const ConfigKeyInput = t.Composite([KeyInput, t.Object({ key: t.Optional(t.String()) })])

type ProviderInputT = Static<typeof ProviderInput>
type ModelInputT = Static<typeof ModelInput>
type KeyInputT = Static<typeof KeyInput>

const newId = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url')}`
const seconds = (ms: number | null) => (ms === null ? null : Math.floor(ms / 1000))
const notFound = (what: string, ref: string) => new GatewayError(404, `No ${what} '${ref}'.`, { code: 'not_found' })
const conflict = (message: string) => new GatewayError(409, message, { code: 'conflict' })

/** Limit fields of a create or patch body over the current limits: absent keeps, null removes. */
function limitsFrom(input: { [K in keyof KeyLimits]?: KeyLimits[K] | null }, current: KeyLimits | null): KeyLimits | null {
  const limits: Record<string, unknown> = { ...current }
  for (const name of ['rpm', 'rpd', 'tpm', 'max_parallel', 'budget'] as const) {
    const value = input[name]
    if (value === null) delete limits[name]
    else if (value !== undefined) limits[name] = value
  }
  return Object.keys(limits).length > 0 ? (limits as KeyLimits) : null
}

function parseExpiry(value: string | number | null | undefined): number | null {
  if (value === undefined || value === null) return null
  const ms = typeof value === 'number' ? value * 1000 : Date.parse(value)
  if (!Number.isFinite(ms)) throw badRequest('expires_at must be an ISO 8601 date-time or unix seconds.', 'expires_at')
  return ms
}

export class AdminService {
  constructor(
    private readonly store: Store,
    private readonly secrets: SecretBox,
    /** Provider types some plugin registered. */
    private readonly providerTypes: () => Iterable<string>,
  ) {}

  // Views: what the API returns. Secrets never appear; providers show the key's last four characters.

  providerView = (p: ProviderRow) => ({
    id: p.id,
    object: 'provider',
    name: p.name,
    type: p.type,
    base_url: p.baseURL,
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
    budget: k.limits?.budget ?? null,
    expires_at: seconds(k.expiresAt),
    enabled: k.enabled,
    metadata: k.metadata,
    created_at: seconds(k.createdAt),
    updated_at: seconds(k.updatedAt),
  })

  /** Spend over a range: totals by key, model, provider and day (optionally for one key). */
  async usage(params: URLSearchParams) {
    const ref = params.get('key')
    const key = ref ? await this.getKey(ref) : null
    return usageReport(this.store, usageRange(params), key?.id ?? null, ['key', 'model', 'provider', 'day'])
  }

  // Providers ------------------------------------------------------------------------------------------

  private checkType(type: string) {
    const known = [...this.providerTypes()]
    if (!known.includes(type)) throw badRequest(`Unknown provider type '${type}'. Known types: ${known.sort().join(', ')}.`, 'type')
  }

  private async uniqueName(kind: 'provider' | 'model', name: string, selfId?: string) {
    const existing = kind === 'provider' ? await this.store.getProvider(name) : await this.store.getModel(name)
    if (existing && existing.id !== selfId) throw conflict(`A ${kind} named '${name}' already exists.`)
  }

  /** Several keys are sealed as one JSON array; the view shows the last four characters of each. */
  private seal(id: string, apiKey: string | string[] | null | undefined) {
    if (!apiKey) return { apiKeySecret: null, apiKeyLast4: null }
    const plain = Array.isArray(apiKey) ? JSON.stringify(apiKey) : apiKey
    const last4 = Array.isArray(apiKey) ? apiKey.map(lastFour).join(',') : lastFour(apiKey)
    return { apiKeySecret: this.secrets.encrypt(plain, `provider:${id}`), apiKeyLast4: last4 }
  }

  async createProvider(input: ProviderInputT) {
    this.checkType(input.type)
    await this.uniqueName('provider', input.name)
    const id = newId('prov')
    const row = await this.store.insertProvider({
      id,
      name: input.name,
      type: input.type,
      baseURL: input.base_url ?? null,
      ...this.seal(id, input.api_key),
      options: input.options ?? {},
    })
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
    const row = await this.getProvider(ref)
    if (patch.type !== undefined) this.checkType(patch.type)
    if (patch.name !== undefined) await this.uniqueName('provider', patch.name, row.id)
    const next: ProviderRow = {
      ...row,
      name: patch.name ?? row.name,
      type: patch.type ?? row.type,
      baseURL: patch.base_url === undefined ? row.baseURL : patch.base_url,
      options: patch.options ?? row.options,
      ...(patch.api_key === undefined ? {} : this.seal(row.id, patch.api_key)),
    }
    return this.providerView(await this.store.updateProvider(next))
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
        if (!provider) throw badRequest(`Unknown provider '${target.provider}'.`, `targets[${i}].provider`)
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
    })
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
    const row = await this.getModel(ref)
    if (patch.name !== undefined) await this.uniqueName('model', patch.name, row.id)
    const next: ModelRow = {
      ...row,
      name: patch.name ?? row.name,
      targets: patch.targets ? await this.resolveTargets(patch.targets) : row.targets,
      limits: patch.limits === undefined ? row.limits : patch.limits && limitsFrom(patch.limits, row.limits),
      routing: patch.routing === undefined ? row.routing : patch.routing,
    }
    return this.modelView(await this.store.updateModel(next))
  }

  async deleteModel(ref: string) {
    const row = await this.getModel(ref)
    await this.store.deleteModel(row.id)
    return { id: row.id, object: 'model_mapping', deleted: true }
  }

  // Virtual keys ---------------------------------------------------------------------------------------

  /** The only response that carries the plaintext key. */
  async createKey(input: KeyInputT, plaintext?: string) {
    const key = plaintext ?? generateVirtualKey()
    if (!isWellFormedKey(key)) throw badRequest('A configured key must be a well-formed condt_ key.', 'key')
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
    )
    return { ...this.keyView(row), key }
  }

  async listKeys() {
    return { object: 'list', data: (await this.store.listKeys()).map(this.keyView) }
  }

  async getKey(ref: string) {
    const row = await this.store.getKey(ref)
    if (!row) throw notFound('key', ref)
    return row
  }

  async updateKey(ref: string, patch: Partial<KeyInputT>) {
    const row = await this.getKey(ref)
    const next: KeyRow = {
      ...row,
      name: patch.name ?? row.name,
      enabled: patch.enabled ?? row.enabled,
      expiresAt: patch.expires_at === undefined ? row.expiresAt : parseExpiry(patch.expires_at),
      allowedModels: patch.allowed_models === undefined ? row.allowedModels : patch.allowed_models,
      allowedEndpoints: patch.allowed_endpoints === undefined ? row.allowedEndpoints : patch.allowed_endpoints,
      limits: limitsFrom(patch, row.limits),
      metadata: patch.metadata ?? row.metadata,
    }
    return this.keyView(await this.store.updateKey(next))
  }

  async deleteKey(ref: string) {
    const row = await this.getKey(ref)
    await this.store.deleteKey(row.id)
    return { id: row.id, object: 'virtual_key', deleted: true }
  }
}
