/**
 * Contract validator over the official OpenAI OpenAPI spec (`shared/openai-openapi/openapi.yaml`).
 *
 * The spec is OpenAPI 3.1 (JSON Schema 2020-12) but still carries OpenAPI 3.0 leftovers that a strict
 * validator would misread, so the document is pre-processed once and cached as JSON under `os.tmpdir()`
 * (keyed by the yaml's size + mtime), which keeps a cached load to a JSON.parse of ~2 MB.
 * Validators are compiled lazily, per schema name, and cached.
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import Ajv2020, { type ErrorObject, type ValidateFunction } from 'ajv/dist/2020'
import addFormats from 'ajv-formats'
import { SseDecoder } from '../../src/core/sse/decoder.ts'

/** Bump when `preprocess` changes so stale caches are not reused. */
const PREPROCESS_VERSION = 1
const SPEC_ID = 'https://conduit.test/openai-openapi.json'
const MAX_LISTED_ERRORS = 40

export interface OpenApiLoadStats {
  /** Where the spec came from on this (first) load. */
  source: 'yaml' | 'cache'
  specPath: string
  cachePath: string
  /** Reading + parsing (+ pre-processing and writing the cache, on a yaml load). */
  loadMs: number
  /** Creating Ajv and registering the document. */
  ajvMs: number
}

/** Where the spec lives: next to the repo (`<repo>/../shared/openai-openapi`), else `$OPENAI_OPENAPI_PATH`. */
export function openApiSpecPath(): string {
  const sibling = path.resolve(import.meta.dir, '../../../shared/openai-openapi/openapi.yaml')
  if (existsSync(sibling)) return sibling
  const fromEnv = process.env.OPENAI_OPENAPI_PATH
  if (fromEnv && existsSync(fromEnv)) return path.resolve(fromEnv)
  throw new Error(`OpenAI OpenAPI spec not found at ${sibling} nor at $OPENAI_OPENAPI_PATH (${fromEnv ?? 'unset'})`)
}

/**
 * Makes the 3.1 document digestible for Ajv 2020 (mutates and returns `doc`):
 * - `nullable: true` (OpenAPI 3.0): `null` is added to `type` (and to `enum` if any); schemas without `type`
 *   (`$ref`, `allOf`, `oneOf`…) are wrapped as `anyOf: [<schema>, {type: 'null'}]`.
 * - boolean `exclusiveMinimum/Maximum` (3.0 style) become the numeric 2020 form.
 * - `$recursiveRef: '#'` (2019-09, meaning "this component") becomes a `$ref` to the enclosing component schema;
 *   left alone, Ajv would ignore it and a `oneOf` around it would match twice.
 */
export function preprocessOpenApi(doc: any): any {
  const schemas: Record<string, unknown> = doc?.components?.schemas ?? {}
  for (const [name, schema] of Object.entries(schemas)) schemas[name] = fixNode(schema, `#/components/schemas/${name}`)
  // Everything else (paths, responses, parameters…) may hold inline schemas too.
  for (const key of Object.keys(doc)) if (key !== 'components') doc[key] = fixNode(doc[key], '#')
  for (const key of Object.keys(doc.components ?? {})) if (key !== 'schemas') doc.components[key] = fixNode(doc.components[key], '#')
  return doc
}

const SCHEMA_MAPS = new Set(['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas'])

function fixNode(node: any, component: string): any {
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) node[i] = fixNode(node[i], component)
    return node
  }
  if (node === null || typeof node !== 'object') return node
  for (const key of Object.keys(node)) {
    const child = node[key]
    if (SCHEMA_MAPS.has(key) && child && typeof child === 'object' && !Array.isArray(child)) {
      // name → schema maps: every entry is a schema, whatever its name (a property may be called `example`).
      for (const name of Object.keys(child)) child[name] = fixNode(child[name], component)
      continue
    }
    // `example(s)` and vendor extensions are data, not schemas.
    if (key === 'example' || key === 'examples' || key.startsWith('x-')) continue
    node[key] = fixNode(child, component)
  }
  if (node.$recursiveRef === '#' && component !== '#') {
    delete node.$recursiveRef
    node.$ref = component
  }
  for (const [exclusive, bound] of [['exclusiveMinimum', 'minimum'], ['exclusiveMaximum', 'maximum']] as const) {
    if (typeof node[exclusive] !== 'boolean') continue
    if (node[exclusive] && typeof node[bound] === 'number') {
      node[exclusive] = node[bound]
      delete node[bound]
    } else delete node[exclusive]
  }
  if (!('nullable' in node) || typeof node.nullable !== 'boolean') return node
  const nullable = node.nullable as boolean
  delete node.nullable
  if (!nullable) return node
  if (Array.isArray(node.enum) && !node.enum.includes(null)) node.enum = [...node.enum, null]
  if (typeof node.type === 'string') {
    node.type = [node.type, 'null']
    return node
  }
  if (Array.isArray(node.type)) {
    if (!node.type.includes('null')) node.type = [...node.type, 'null']
    return node
  }
  // No `type`: keep annotations outside, put the constraints into the first `anyOf` branch.
  const constraints: Record<string, unknown> = {}
  const outer: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(node)) {
    if (k === 'description' || k === 'title' || k === 'default' || k === 'example' || k === 'deprecated' || k.startsWith('x-')) outer[k] = v
    else constraints[k] = v
  }
  if (Object.keys(constraints).length === 0) return node // `{nullable: true}` alone: anything goes already
  return { ...outer, anyOf: [constraints, { type: 'null' }] }
}

let stats: OpenApiLoadStats | undefined
let ajv: Ajv2020 | undefined
let schemaNames: Set<string> | undefined
const validators = new Map<string, ValidateFunction>()

function cachePathFor(specPath: string): string {
  const st = statSync(specPath)
  const pathHash = createHash('sha1').update(specPath).digest('hex').slice(0, 10)
  return path.join(os.tmpdir(), `conduit-openapi-${pathHash}-${st.size}-${Math.trunc(st.mtimeMs)}-v${PREPROCESS_VERSION}.json`)
}

/** The pre-processed spec document (from the on-disk JSON cache when fresh). */
function loadDocument(): { doc: any; stats: Omit<OpenApiLoadStats, 'ajvMs'> } {
  const t0 = performance.now()
  const specPath = openApiSpecPath()
  const cachePath = cachePathFor(specPath)
  if (existsSync(cachePath)) {
    try {
      const doc = JSON.parse(readFileSync(cachePath, 'utf8'))
      return { doc, stats: { source: 'cache', specPath, cachePath, loadMs: performance.now() - t0 } }
    } catch {
      // A torn or foreign file: rebuild below.
    }
  }
  const doc = preprocessOpenApi(Bun.YAML.parse(readFileSync(specPath, 'utf8')))
  const tmp = `${cachePath}.${process.pid}.${Date.now()}.tmp`
  try {
    writeFileSync(tmp, JSON.stringify(doc))
    renameSync(tmp, cachePath) // atomic: parallel test processes never read a half-written cache
  } catch {
    try {
      unlinkSync(tmp)
    } catch {}
  }
  return { doc, stats: { source: 'yaml', specPath, cachePath, loadMs: performance.now() - t0 } }
}

function getAjv(): Ajv2020 {
  if (ajv) return ajv
  const { doc, stats: loadStats } = loadDocument()
  const t0 = performance.now()
  const instance = new Ajv2020({ strict: false, allErrors: true, validateSchema: false, logger: false })
  addFormats(instance)
  // Spec-only formats that carry no constraint Ajv could check.
  for (const format of ['unixtime', 'binary']) instance.addFormat(format, true)
  instance.addSchema(doc, SPEC_ID)
  schemaNames = new Set(Object.keys(doc?.components?.schemas ?? {}))
  ajv = instance
  stats = { ...loadStats, ajvMs: performance.now() - t0 }
  return instance
}

/** Timings of the spec load in this process (loads the spec if it was not loaded yet). */
export function openApiLoadStats(): OpenApiLoadStats {
  getAjv()
  return stats!
}

/** Whether `components.schemas[name]` exists in the spec. */
export function hasSchema(name: string): boolean {
  getAjv()
  return schemaNames!.has(name)
}

/** The compiled (cached) validator for `components.schemas[name]`. */
export function schemaValidator(name: string): ValidateFunction {
  const cached = validators.get(name)
  if (cached) return cached
  if (!hasSchema(name)) throw new Error(`OpenAPI spec has no components.schemas.${name}`)
  const validate = getAjv().compile({ $ref: `${SPEC_ID}#/components/schemas/${encodeURIComponent(name)}` })
  validators.set(name, validate)
  return validate
}

export function formatAjvErrors(errors: ErrorObject[] | null | undefined): string {
  const list = errors ?? []
  const lines = list.slice(0, MAX_LISTED_ERRORS).map((e) => {
    const where = e.instancePath === '' ? '(root)' : e.instancePath
    const params = Object.keys(e.params ?? {}).length > 0 ? ` ${JSON.stringify(e.params)}` : ''
    return `  ${where} ${e.message ?? 'is invalid'}${params} [${e.schemaPath}]`
  })
  if (list.length > MAX_LISTED_ERRORS) lines.push(`  … and ${list.length - MAX_LISTED_ERRORS} more`)
  return lines.join('\n')
}

/** Throws an Error listing every Ajv violation when `value` does not match `components.schemas[name]`. */
export function validateSchema(name: string, value: unknown): void {
  const validate = schemaValidator(name)
  if (validate(value)) return
  throw new Error(`Value does not match OpenAPI schema ${name}:\n${formatAjvErrors(validate.errors)}\nvalue: ${preview(value)}`)
}

/** Alias of `validateSchema`, reads better inside tests. */

/**
 * Validates a whole SSE body: every `data:` event but the last is JSON matching `chunkSchema`
 * (e.g. `CreateChatCompletionStreamResponse`), and the stream ends with `data: [DONE]`.
 * Comment-only blocks are skipped. An `event: error` or an `{"error": …}` payload fails with its message.
 * Returns the parsed chunks (without `[DONE]`).
 */
export function validateSseBody(text: string, chunkSchema: string): any[] {
  const decoder = new SseDecoder()
  const events = [...decoder.push(text), ...decoder.flush()].filter((e) => !(e.event === null && e.data === ''))
  const last = events.at(-1)
  if (!last || last.data !== '[DONE]') {
    throw new Error(`SSE body does not end with "data: [DONE]" (last event: ${last ? preview(last.raw) : 'none'})`)
  }
  const validate = schemaValidator(chunkSchema)
  const chunks: any[] = []
  for (let i = 0; i < events.length - 1; i++) {
    const event = events[i]!
    if (event.data === '[DONE]') throw new Error(`SSE event #${i} is a premature "data: [DONE]"`)
    let chunk: any
    try {
      chunk = JSON.parse(event.data)
    } catch {
      throw new Error(`SSE event #${i} is not JSON: ${preview(event.data)}`)
    }
    if (event.event === 'error' || (chunk && typeof chunk === 'object' && 'error' in chunk)) {
      throw new Error(`SSE event #${i} is an error event: ${preview(event.data)}`)
    }
    if (!validate(chunk)) {
      throw new Error(`SSE event #${i} does not match OpenAPI schema ${chunkSchema}:\n${formatAjvErrors(validate.errors)}\ndata: ${preview(event.data)}`)
    }
    chunks.push(chunk)
  }
  return chunks
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/

/**
 * Validates an embeddings response against `CreateEmbeddingResponse`. The spec only knows float arrays, so
 * base64 `embedding` strings (`encoding_format: "base64"`) are checked to be base64 of whole float32 values
 * and then stand in as `[0]` for the schema check.
 */
export function validateEmbeddingResponse(value: unknown): void {
  const copy = structuredClone(value) as any
  if (copy && typeof copy === 'object' && Array.isArray(copy.data)) {
    copy.data.forEach((item: any, i: number) => {
      if (!item || typeof item.embedding !== 'string') return
      const s: string = item.embedding
      if (!BASE64.test(s)) throw new Error(`data[${i}].embedding is a string but not base64: ${preview(s)}`)
      const bytes = Buffer.from(s, 'base64').length
      if (bytes % 4 !== 0) throw new Error(`data[${i}].embedding decodes to ${bytes} bytes, not whole float32 values`)
      item.embedding = [0]
    })
  }
  validateSchema('CreateEmbeddingResponse', copy)
}

function preview(value: unknown): string {
  let s: string
  try {
    s = typeof value === 'string' ? value : JSON.stringify(value)
  } catch {
    s = String(value)
  }
  return s === undefined ? 'undefined' : s.length > 600 ? `${s.slice(0, 600)}…` : s
}
