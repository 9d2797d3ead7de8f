import { Type as t, type TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import { badRequest } from '../plugin-sdk/errors.ts'
import type { Endpoint } from '../plugin-sdk/types.ts'

/*
 * The OpenAI request fields Conduit itself relies on, checked so that a bad request gets a 400 naming the
 * `param`. Everything else passes through untouched (additionalProperties), so new OpenAI fields keep working.
 */
const open = { additionalProperties: true }
const model = t.String({ minLength: 1 })
const common = {
  model,
  stream: t.Optional(t.Boolean()),
  stream_options: t.Optional(t.Union([t.Null(), t.Object({ include_usage: t.Optional(t.Boolean()) }, open)])),
  n: t.Optional(t.Union([t.Null(), t.Integer({ minimum: 1, maximum: 128 })])),
  temperature: t.Optional(t.Union([t.Null(), t.Number({ minimum: 0, maximum: 2 })])),
  top_p: t.Optional(t.Union([t.Null(), t.Number({ minimum: 0, maximum: 1 })])),
  max_tokens: t.Optional(t.Union([t.Null(), t.Integer({ minimum: 1 })])),
  user: t.Optional(t.String()),
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
    max_completion_tokens: t.Optional(t.Union([t.Null(), t.Integer({ minimum: 1 })])),
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

const compiled: Partial<Record<Endpoint, TypeCheck<TSchema>>> = {
  chat: TypeCompiler.Compile(ChatCompletionRequest),
  completions: TypeCompiler.Compile(CompletionRequest),
  embeddings: TypeCompiler.Compile(EmbeddingRequest),
}

/** `/messages/0/role` → `messages[0].role`, the way OpenAI names params. */
const toParam = (path: string) =>
  path
    .split('/')
    .filter(Boolean)
    .reduce((acc, part) => (/^\d+$/.test(part) ? `${acc}[${part}]` : acc ? `${acc}.${part}` : part), '')

export function validateRequest(endpoint: Endpoint, body: unknown): asserts body is Record<string, any> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw badRequest('The request body must be a JSON object.')
  }
  const check = compiled[endpoint]
  if (!check || check.Check(body)) return
  const error = check.Errors(body).First()!
  const param = toParam(error.path)
  const missing = error.value === undefined
  throw badRequest(
    missing ? `Missing required parameter: '${param}'.` : `Invalid value for '${param}': ${error.message.toLowerCase()}.`,
    param || null,
    missing ? 'missing_required_parameter' : 'invalid_value',
  )
}

const UPSTREAM_URL_KEYS = new Set(['apibase', 'baseurl', 'apiurl', 'endpointurl'])
/** Subtrees that are JSON Schemas describing tool arguments: their property names are data, not config. */
const SCHEMA_KEYS = new Set(['parameters', 'schema', 'input_schema'])

/** Clients never choose the upstream URL: refuse `api_base`/`base_url` (any spelling) at any depth. */
export function refuseUpstreamOverrides(value: unknown, path = ''): void {
  if (value === null || typeof value !== 'object') return
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) refuseUpstreamOverrides(value[i], `${path}[${i}]`)
    return
  }
  for (const key in value) {
    const here = path ? `${path}.${key}` : key
    if (UPSTREAM_URL_KEYS.has(key.replace(/[_-]/g, '').toLowerCase())) {
      throw badRequest(`The parameter '${here}' is not allowed: clients cannot choose the upstream URL.`, here, 'forbidden_parameter')
    }
    if (!SCHEMA_KEYS.has(key)) refuseUpstreamOverrides((value as Record<string, unknown>)[key], here)
  }
}
