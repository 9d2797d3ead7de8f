import { Type as t, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { badRequest } from '../plugin-sdk/errors.ts'
import { OPENAI_AUDIO_ABILITIES } from '../plugin-sdk/openai-compatible.ts'
import type { Operation } from '../plugin-sdk/types.ts'

/*
 * The OpenAI request fields Conduit itself relies on, checked so that a bad request gets a 400 naming the
 * `param`. Everything else passes through untouched (additionalProperties), so new OpenAI fields keep working.
 */
const open = { additionalProperties: true }
/** Token counts are 32-bit integers at OpenAI; a larger one (1e308) would reserve an infinite budget ("$Infinity"). */
const tokens = t.Integer({ minimum: 1, maximum: 2_147_483_647 })
const model = t.String({ minLength: 1 })
const common = {
  model,
  stream: t.Optional(t.Boolean()),
  stream_options: t.Optional(t.Union([t.Null(), t.Object({ include_usage: t.Optional(t.Boolean()) }, open)])),
  n: t.Optional(t.Union([t.Null(), t.Integer({ minimum: 1, maximum: 128 })])),
  temperature: t.Optional(t.Union([t.Null(), t.Number({ minimum: 0, maximum: 2 })])),
  top_p: t.Optional(t.Union([t.Null(), t.Number({ minimum: 0, maximum: 1 })])),
  max_tokens: t.Optional(t.Union([t.Null(), tokens])),
  user: t.Optional(t.String()),
  safety_identifier: t.Optional(t.String()),
}

const message = t.Object(
  {
    role: t.Union(['system', 'developer', 'user', 'assistant', 'tool', 'function'].map((r) => t.Literal(r))),
    content: t.Optional(t.Union([t.Null(), t.String(), t.Array(t.Object({ type: t.String() }, open))])),
    tool_calls: t.Optional(t.Array(t.Object({ id: t.String(), type: t.String(), function: t.Object({ name: t.String(), arguments: t.String() }, open) }, open))),
    tool_call_id: t.Optional(t.String()),
  },
  open,
)

const tool = t.Object({ type: t.String(), function: t.Optional(t.Object({ name: t.String({ minLength: 1 }) }, open)) }, open)

export const ChatCompletionRequest = t.Object(
  {
    ...common,
    messages: t.Array(message, { minItems: 1 }),
    max_completion_tokens: t.Optional(t.Union([t.Null(), tokens])),
    tools: t.Optional(t.Array(tool)),
  },
  open,
)

const prompt = t.Union([t.String(), t.Array(t.String()), t.Array(t.Integer()), t.Array(t.Array(t.Integer()))])
export const CompletionRequest = t.Object({ ...common, prompt }, open)

export const EmbeddingRequest = t.Object(
  {
    model,
    input: t.Union([t.String(), t.Array(t.String(), { minItems: 1 }), t.Array(t.Integer(), { minItems: 1 }), t.Array(t.Array(t.Integer()), { minItems: 1 })]),
    encoding_format: t.Optional(t.Union([t.Literal('float'), t.Literal('base64')])),
    dimensions: t.Optional(t.Integer({ minimum: 1 })),
    user: t.Optional(t.String()),
  },
  open,
)

const literals = (values: readonly string[]) => t.Union(values.map((v) => t.Literal(v)))

export const SpeechRequest = t.Object(
  {
    model,
    // 4,096 characters (see CHARACTER_LIMITS): at most twice as many UTF-16 units.
    input: t.String({ minLength: 1, maxLength: 8192 }),
    voice: t.Union([t.String({ minLength: 1 }), t.Object({ id: t.String({ minLength: 1 }) }, open)]),
    instructions: t.Optional(t.String({ maxLength: 8192 })),
    response_format: t.Optional(literals(OPENAI_AUDIO_ABILITIES.outputFormats)),
    speed: t.Optional(t.Number({ minimum: 0.25, maximum: 4 })),
    stream_format: t.Optional(literals(['audio', 'sse'])),
    user: t.Optional(t.String()),
  },
  open,
)

/** Multipart fields, after `formBody` turned the typed ones into numbers, booleans and arrays. */
const transcriptionFields = {
  model,
  prompt: t.Optional(t.String()),
  temperature: t.Optional(t.Number({ minimum: 0, maximum: 1 })),
  user: t.Optional(t.String()),
}
export const TranscriptionRequest = t.Object(
  {
    ...transcriptionFields,
    language: t.Optional(t.String({ minLength: 2 })),
    response_format: t.Optional(literals(OPENAI_AUDIO_ABILITIES.transcriptFormats)),
    timestamp_granularities: t.Optional(t.Array(literals(['word', 'segment']))),
    include: t.Optional(t.Array(t.String())),
    stream: t.Optional(t.Boolean()),
    chunking_strategy: t.Optional(t.Union([t.Literal('auto'), t.Object({ type: t.String() }, open)])),
  },
  open,
)
// Translations have no speakers to tell apart: every transcript format but diarized_json.
export const TranslationRequest = t.Object(
  { ...transcriptionFields, response_format: t.Optional(literals(OPENAI_AUDIO_ABILITIES.transcriptFormats.filter((f) => f !== 'diarized_json'))) },
  open,
)

/** Images (OpenAI's CreateImage*Request): the fields the gateway relies on or can check for every provider. */
const nullable = <T extends TSchema>(schema: T) => t.Optional(t.Union([t.Null(), schema]))
const imageCommon = {
  model,
  n: nullable(t.Integer({ minimum: 1, maximum: 10 })),
  size: nullable(t.String({ minLength: 1, maxLength: 32 })),
  response_format: nullable(literals(['url', 'b64_json'])),
  user: t.Optional(t.String()),
}
const imagePrompt = t.String({ minLength: 1, maxLength: 32_000 })
const gptImageFields = {
  quality: nullable(literals(['standard', 'hd', 'low', 'medium', 'high', 'auto'])),
  output_format: nullable(literals(['png', 'jpeg', 'webp'])),
  output_compression: nullable(t.Integer({ minimum: 0, maximum: 100 })),
  background: nullable(literals(['transparent', 'opaque', 'auto'])),
  stream: nullable(t.Boolean()),
  partial_images: nullable(t.Integer({ minimum: 0, maximum: 3 })),
}
export const ImageGenerationRequest = t.Object(
  { ...imageCommon, ...gptImageFields, prompt: imagePrompt, style: nullable(literals(['vivid', 'natural'])), moderation: nullable(literals(['low', 'auto'])) },
  open,
)
export const ImageEditRequest = t.Object({ ...imageCommon, ...gptImageFields, prompt: imagePrompt, input_fidelity: nullable(literals(['high', 'low'])) }, open)
export const ImageVariationRequest = t.Object(imageCommon, open)

const SCHEMAS: Partial<Record<Operation, TSchema>> = {
  images: ImageGenerationRequest,
  image_edits: ImageEditRequest,
  image_variations: ImageVariationRequest,
  chat: ChatCompletionRequest,
  completions: CompletionRequest,
  embeddings: EmbeddingRequest,
  speech: SpeechRequest,
  transcriptions: TranscriptionRequest,
  translations: TranslationRequest,
}
/** Limits in characters, as OpenAI counts them (code points): TypeBox's maxLength counts UTF-16 units, two for an emoji. */
const CHARACTER_LIMITS: Partial<Record<Operation, Record<string, number>>> = { speech: { input: 4096, instructions: 4096 } }
const compiled = new Map<TSchema, TypeCheck<TSchema>>()
/** A schema's validator, compiled on first use: it is generated code, and a gateway holds only those it uses. */
export const checkerOf = (schema: TSchema) => compiled.get(schema) ?? compiled.set(schema, TypeCompiler.Compile(schema)).get(schema)!

/** `['messages', 0, 'role']` → `messages[0].role`, the way OpenAI names params (numbers are array indexes). */
export const paramName = (parts: readonly (string | number)[]) =>
  parts.reduce<string>((name, part) => (typeof part === 'number' ? `${name}[${part}]` : name ? `${name}.${part}` : part), '')

/** A JSON pointer as TypeBox reports it (`/messages/0/role`) as a param name. */
export const toParam = (pointer: string) =>
  paramName(
    pointer
      .split('/')
      .filter(Boolean)
      .map((part) => (/^\d+$/.test(part) ? Number(part) : part.replace(/~1/g, '/').replace(/~0/g, '~'))),
  )

export function validateRequest(operation: Operation, body: unknown): asserts body is Record<string, any> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw badRequest('The request body must be a JSON object.')
  }
  const schema = SCHEMAS[operation]
  if (!schema) return
  const check = checkerOf(schema)
  if (check.Check(body)) {
    const limits = CHARACTER_LIMITS[operation]
    for (const field in limits) {
      const value = (body as Record<string, unknown>)[field]
      const max = limits[field]!
      if (typeof value === 'string' && value.length > max && [...value].length > max) {
        throw badRequest(`Invalid value for '${field}': expected at most ${max} characters.`, field, 'invalid_value')
      }
    }
    return
  }
  const error = check.Errors(body).First()!
  const param = toParam(error.path)
  const missing = error.value === undefined
  throw badRequest(
    missing ? `Missing required parameter: '${param}'.` : `Invalid value for '${param}': ${expectation(error)}.`,
    param || null,
    missing ? 'missing_required_parameter' : 'invalid_value',
  )
}

/**
 * What a failed check expected, in words: for a union (a nullable number, a choice among names, a string or an
 * array) what it accepts, rather than TypeBox's "expected union value"; otherwise TypeBox's own message.
 */
export function expectation(error: { schema: TSchema; message: string }): string {
  const union = (error.schema as { anyOf?: TSchema[] }).anyOf
  if (!union) return error.message.toLowerCase()
  const options = union.flatMap((s: any) => s.anyOf ?? [s]).filter((s: any) => s.type !== 'null')
  if (options.every((s: any) => typeof s.const === 'string')) return `expected one of ${options.map((s: any) => `'${s.const}'`).join(', ')}`
  return `expected ${[...new Set(options.map(described))].join(' or ')}`
}

function described(s: any): string {
  if (s.description) return s.description
  if (s.type === 'integer' || s.type === 'number') {
    const kind = s.type === 'integer' ? 'an integer' : 'a number'
    if (s.minimum !== undefined && s.maximum !== undefined) return `${kind} from ${s.minimum} to ${s.maximum}`
    if (s.minimum !== undefined) return `${kind} of at least ${s.minimum}`
    if (s.maximum !== undefined) return `${kind} of at most ${s.maximum}`
    return kind
  }
  if (s.type === 'string') return s.minLength ? 'a non-empty string' : 'a string'
  if (s.type === 'array') return s.minItems ? 'a non-empty array' : 'an array'
  if (s.type === 'object') return 'an object'
  if (s.type === 'boolean') return 'a boolean'
  if (s.const !== undefined) return JSON.stringify(s.const)
  return 'a valid value'
}

/**
 * Names a client might use to point the gateway elsewhere, compared without `_`/`-` and case: `api_base`,
 * `base_url`, `api_base_url`, `azure_endpoint`, `openai_api_base`, `endpoint_url`, `proxy_url`, … A bare `url`
 * (an image part's) or `endpoint` is data.
 */
const UPSTREAM_URL_KEY =
  /^(?:openai|azure|custom|provider|upstream)?(?:api)?base(?:url|uri)$|^(?:openai|azure|custom|provider|upstream)?apibase$|^(?:api|azure|openai|upstream|proxy|provider|server|target|custom)(?:url|uri|host|endpoint|endpointurl)$|^endpointur[li]$/
/** Subtrees that are JSON Schemas describing tool arguments: their property names are data, not config. */
const SCHEMA_KEYS = new Set(['parameters', 'schema', 'input_schema'])
/** Deeper than any real request; JSON.stringify (and so every upstream call) overflows the stack near 10,000. */
export const MAX_DEPTH = 128

/** Made once: a literal in the function below would be a new RegExp object for every key of every request. */
const SEPARATORS = /[_-]/g

/**
 * Verdicts by key: requests repeat the same few keys (`model`, `messages`, `role`, `content`), and deciding one anew
 * takes two new strings and a regex. Bounded in count and length, since a client may send any keys: others are
 * decided each time.
 */
const upstreamURLKeys = new Map<string, boolean>()
const MAX_REMEMBERED_KEYS = 1024
const MAX_REMEMBERED_KEY_LENGTH = 64

export function isUpstreamURLKey(key: string): boolean {
  let verdict = upstreamURLKeys.get(key)
  if (verdict === undefined) {
    verdict = UPSTREAM_URL_KEY.test(key.replace(SEPARATORS, '').toLowerCase())
    if (upstreamURLKeys.size < MAX_REMEMBERED_KEYS && key.length <= MAX_REMEMBERED_KEY_LENGTH) upstreamURLKeys.set(key, verdict)
  }
  return verdict
}

interface Visit {
  value: unknown
  depth: number
  key: string | number | null
  parent: Visit | null
  /** Inside a tool's JSON Schema: property names there are data, only the depth counts. */
  inSchema: boolean
}

/** `messages[0].content` for a node, built only when an error needs it. */
function pathOf(node: Visit): string {
  const keys: (string | number)[] = []
  for (let n: Visit | null = node; n && n.key !== null; n = n.parent) keys.unshift(n.key)
  return paramName(keys)
}

/**
 * One walk of the body, without recursion (a 100,000-level body must be a quick 400, not a stack overflow):
 * refuses nesting past MAX_DEPTH, and `api_base`/`base_url`-like keys at any depth — clients never choose the
 * upstream URL.
 */
export function refuseUpstreamOverrides(body: unknown): void {
  const stack: Visit[] = [{ value: body, depth: 0, key: null, parent: null, inSchema: false }]
  while (stack.length > 0) {
    const node = stack.pop()!
    const value = node.value
    if (value === null || typeof value !== 'object') continue
    if (node.depth >= MAX_DEPTH) {
      throw badRequest(`The request body is nested more than ${MAX_DEPTH} levels deep.`, pathOf(node) || null, 'invalid_value')
    }
    const depth = node.depth + 1
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const item = value[i]
        if (item !== null && typeof item === 'object') stack.push({ value: item, depth, key: i, parent: node, inSchema: node.inSchema })
      }
      continue
    }
    for (const key in value) {
      const item = (value as Record<string, unknown>)[key]
      if (!node.inSchema && isUpstreamURLKey(key)) {
        const here = pathOf({ value: item, depth, key, parent: node, inSchema: false })
        throw badRequest(`The parameter '${here}' is not allowed: clients cannot choose the upstream URL.`, here, 'forbidden_parameter')
      }
      if (item !== null && typeof item === 'object') stack.push({ value: item, depth, key, parent: node, inSchema: node.inSchema || SCHEMA_KEYS.has(key) })
    }
  }
}
