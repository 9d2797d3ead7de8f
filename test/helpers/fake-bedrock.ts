/**
 * A fake AWS Bedrock Runtime that speaks the real wire format (shapes from the Bedrock API reference:
 * Converse, ConverseStream, InvokeModel with Amazon Titan Text Embeddings): `POST /model/{modelId}/converse`,
 * `/converse-stream` (binary `application/vnd.amazon.eventstream`, payloads padded with a `p` field like the
 * real service) and `/invoke`. Errors are `{"message"}` with an `x-amzn-ErrorType` header.
 *
 * Authentication is checked like AWS does it: a SigV4 `Authorization` header is verified by recomputing the
 * canonical request from the request as received (this file's own implementation, independent of the
 * adapter's signer: path segments encoded again, signed headers, payload hash, scope, clock skew, session
 * token), or a Bedrock API key arrives as `Authorization: Bearer`.
 *
 * Scripted by the text of the last user message (the contract shared by every fake in test/helpers):
 * - the last user turn holds a toolResult           → FAKE_TOOL_RESULT_REPLY
 * - `fail-<status>`, status 400 403 404 408 424 429 500 503 → that status with Bedrock's exception for it
 * - tools present and the text contains "weather"   → one `get_weather` toolUse with FAKE_TOOL_INPUT
 * - `finish-length`                                 → the reply cut to 3 tokens, stopReason max_tokens
 * - `midstream-error` when streaming                → a few deltas, then a modelStreamErrorException frame
 * - `cache-hit` anywhere in the prompt              → usage reports cacheReadInputTokens
 * - anything else                                   → FAKE_REPLY
 * `inferenceConfig.maxTokens` and `stopSequences` are honoured on text replies. Embeddings: `fail-<status>` in
 * `inputText` fails the same way.
 *
 * `usageLog` gets one entry per successful generation, what the fake reported in OpenAI terms (prompt tokens
 * include cache reads), pushed before the response or the stream's last frame is sent. Titan embeds one
 * text per call: calls carrying the same `x-amzn-trace-id` Root (the adapter's fan-out of one request) add up
 * into one entry.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { crc32 } from 'node:zlib'

export const FAKE_REPLY = 'Hello from fake Bedrock! 你好 👋'
export const FAKE_TOOL_RESULT_REPLY = 'The weather in Paris is sunny.'
export const FAKE_TOOL_INPUT = { city: 'Paris' }
/** Long-term credentials the fake accepts (AWS's documentation example key pair, with a fake id). */
export const FAKE_ACCESS_KEY_ID = 'AKIAFAKEBEDROCK00001'
export const FAKE_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYFAKEBEDROCK'
/** Temporary credentials: the session token must come along (and is signed by the adapter). */
export const FAKE_TEMPORARY_CREDENTIALS = {
  accessKeyId: 'ASIAFAKEBEDROCK00002',
  secretAccessKey: 'tEmPoRaRy/SeCrEt+KeY/For/FakeBedrock00000',
  sessionToken: 'IQoJb3JpZ2luX2VjEFAKE//////////wEaCXVzLWVhc3QtMSJHMEUCIQDfakeSessionToken+/=',
}
/** A Bedrock API key (they start with `ABSK`). */
export const FAKE_API_KEY = 'ABSKZmFrZS1iZWRyb2NrLWFwaS1rZXktMDAwMDE='
export const FAKE_REGION = 'us-east-1'
/** Titan Text Embeddings v2's default size. */
export const FAKE_EMBEDDING_DIMENSIONS = 1024
export const FAKE_CACHE_READ_TOKENS = 8

export interface FakeBedrockOptions {
  /** The region the fake serves; requests signed for another are refused. Default us-east-1. */
  region?: string
  /** Write streams in pieces of this many bytes (splitting frames anywhere) instead of one write per frame. */
  streamChunkBytes?: number
  /** The fake's clock (ms since epoch), to exercise signature expiry. Default Date.now. */
  now?: () => number
  /** InvokeModel for other models (images: fake-bedrock-images.ts), after authentication; null passes on. */
  invoke?: (modelId: string, body: any) => Response | null
}

export interface RecordedRequest {
  method: string
  /** Path with percent-escapes decoded, e.g. `/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse`. */
  path: string
  /** The path exactly as received, e.g. `/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse`. */
  rawPath: string
  /** Header names lowercased. */
  headers: Record<string, string>
  /** Parsed JSON body; the raw text when it is not JSON; `null` when empty. */
  body: any
}

/** What the fake answered to one request (auth failures included). */
export interface RecordedResponse {
  status: number
  errorType: string | null
  message: string | null
}

export interface FakeBedrock {
  /** The `base_url` for the provider (no path). */
  url: string
  region: string
  accessKeyId: string
  secretAccessKey: string
  temporary: typeof FAKE_TEMPORARY_CREDENTIALS
  apiKey: string
  requests: RecordedRequest[]
  responses: RecordedResponse[]
  usageLog: { prompt_tokens: number; completion_tokens: number }[]
  stop(): void
}

type Block = { text: string } | { toolUse: { toolUseId: string; name: string; input: Record<string, unknown> } }

/** What the fake will say, before it is rendered as a Converse response or event stream. */
export interface FakeReply {
  blocks: Block[]
  /** Stream pieces per block: text deltas or toolUse input fragments. */
  pieces: string[][]
  stopReason: 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use'
  usage: { inputTokens: number; outputTokens: number; totalTokens: number; cacheReadInputTokens?: number }
}

const encoder = new TextEncoder()
const utf8 = new TextDecoder()
const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
const randomId = (prefix: string, length: number) => prefix + Array.from({ length }, () => ALNUM[Math.floor(Math.random() * 62)]).join('')
const ERROR_NAMESPACE = 'http://internal.amazon.com/coral/com.amazon.bedrock/'
const CORAL_NAMESPACE = 'http://internal.amazon.com/coral/com.amazon.coral.service/'

/** The exception Bedrock answers with for each status the fake can be asked to fail with. */
const FAILURES: Record<number, { type: string; message: string }> = {
  400: { type: 'ValidationException', message: 'The model returned the following errors: Input is too long for requested model. (fail-400)' },
  403: { type: 'AccessDeniedException', message: "You don't have access to the model with the specified model ID." },
  404: { type: 'ResourceNotFoundException', message: 'Could not resolve the foundation model from the provided model identifier.' },
  408: { type: 'ModelTimeoutException', message: 'Model has timed out in processing the request. Try your request again.' },
  424: { type: 'ModelErrorException', message: 'The model produced an invalid response. Try your request again.' },
  429: { type: 'ThrottlingException', message: 'Too many requests, please wait before trying again.' },
  500: { type: 'InternalServerException', message: 'The server encountered an internal error while processing the request.' },
  503: { type: 'ServiceUnavailableException', message: 'Bedrock is unable to process your request.' },
}

const CONVERSE_KEYS = new Set([
  'messages',
  'system',
  'inferenceConfig',
  'toolConfig',
  'guardrailConfig',
  'additionalModelRequestFields',
  'additionalModelResponseFieldPaths',
  'promptVariables',
  'requestMetadata',
  'performanceConfig',
])
/** What a toolResult's content list may hold. */
const TOOL_RESULT_KEYS = new Set(['json', 'text', 'image', 'document', 'video'])
const BLOCK_KEYS = new Set(['text', 'image', 'document', 'video', 'toolUse', 'toolResult', 'guardContent', 'cachePoint', 'reasoningContent', 'citationsContent'])
const IMAGE_FORMATS = new Set(['png', 'jpeg', 'gif', 'webp'])

export async function startFakeBedrock(options: FakeBedrockOptions = {}): Promise<FakeBedrock> {
  const region = options.region ?? FAKE_REGION
  const now = options.now ?? Date.now
  const requests: RecordedRequest[] = []
  const responses: RecordedResponse[] = []
  const usageLog: FakeBedrock['usageLog'] = []
  const secrets = new Map<string, { secret: string; sessionToken?: string }>([
    [FAKE_ACCESS_KEY_ID, { secret: FAKE_SECRET_ACCESS_KEY }],
    [FAKE_TEMPORARY_CREDENTIALS.accessKeyId, { secret: FAKE_TEMPORARY_CREDENTIALS.secretAccessKey, sessionToken: FAKE_TEMPORARY_CREDENTIALS.sessionToken }],
  ])
  /** usageLog entry per embeddings trace, so the calls of one fan-out count as one generation. */
  const traces = new Map<string, { prompt_tokens: number; completion_tokens: number }>()

  const fail = (status: number, type: string, message: string, namespace = ERROR_NAMESPACE) => {
    responses.push({ status, errorType: type, message })
    return Response.json({ message }, { status, headers: { 'x-amzn-ErrorType': `${type}:${namespace}`, 'x-amzn-RequestId': crypto.randomUUID() } })
  }
  const ok = (response: Response) => {
    responses.push({ status: response.status, errorType: null, message: null })
    return response
  }

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const url = new URL(req.url)
      const rawPath = url.pathname
      const bytes = new Uint8Array(await req.arrayBuffer())
      const text = utf8.decode(bytes)
      let body: any = null
      try {
        body = text ? JSON.parse(text) : null
      } catch {
        body = text || null
      }
      const path = rawPath.split('/').map(safeDecode).join('/')
      requests.push({ method: req.method, path, rawPath, headers: Object.fromEntries(req.headers), body })

      const denied = authenticate(req, rawPath, url.search, bytes, { secrets, region, now: now() })
      if (denied) return fail(403, denied.type, denied.message, CORAL_NAMESPACE)

      const route = /^\/model\/([^/]+)\/(converse|converse-stream|invoke)$/.exec(rawPath)
      if (req.method !== 'POST' || !route) return fail(404, 'UnknownOperationException', 'Unknown operation')
      const modelId = safeDecode(route[1]!)
      const action = route[2]!
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        return fail(400, 'SerializationException', 'Malformed request body: expected a JSON object.')
      }

      if (action === 'invoke') {
        const other = options.invoke?.(modelId, body)
        if (other) {
          responses.push({ status: other.status, errorType: other.headers.get('x-amzn-ErrorType'), message: null })
          return other
        }
        if (!modelId.includes('titan-embed')) return fail(400, 'ValidationException', 'Malformed input request: #: required key [messages] not found, please reformat your input and try again.')
        const invalid = validateTitan(body, modelId)
        if (invalid) return fail(400, 'ValidationException', invalid)
        const failure = scriptedFailure(body.inputText)
        if (failure) return fail(failure.status, failure.type, failure.message)
        const dimensions = body.dimensions ?? FAKE_EMBEDDING_DIMENSIONS
        const embedding = fakeEmbedding(body.inputText, dimensions, body.normalize !== false)
        const inputTextTokenCount = fakeTokens(body.inputText)
        const root = /Root=([^;]+)/.exec(req.headers.get('x-amzn-trace-id') ?? '')?.[1]
        const traced = root ? traces.get(root) : undefined
        if (traced) traced.prompt_tokens += inputTextTokenCount
        else {
          const entry = { prompt_tokens: inputTextTokenCount, completion_tokens: 0 }
          usageLog.push(entry)
          if (root) traces.set(root, entry)
        }
        return ok(Response.json({ embedding, embeddingsByType: { float: embedding }, inputTextTokenCount }, { headers: { 'x-amzn-RequestId': crypto.randomUUID() } }))
      }

      if (modelId.includes('titan-embed')) {
        return fail(400, 'ValidationException', "This action doesn't support the model that you provided. Try again with a supported text or chat model.")
      }
      const invalid = validateConverse(body)
      if (invalid) return fail(400, 'ValidationException', invalid)

      const last = [...body.messages].reverse().find((m: any) => m.role === 'user')
      const blocks: any[] = last?.content ?? []
      const lastText = blocks.map((b) => (typeof b.text === 'string' ? b.text : '')).join(' ')
      const failure = scriptedFailure(lastText)
      if (failure) return fail(failure.status, failure.type, failure.message)

      const reply = scriptedReply(body, blocks, lastText)
      const headers = { 'x-amzn-RequestId': crypto.randomUUID() }
      if (action === 'converse') {
        usageLog.push(openAIUsage(reply.usage))
        return ok(
          Response.json(
            {
              output: { message: { role: 'assistant', content: reply.blocks } },
              stopReason: reply.stopReason,
              usage: reply.usage,
              metrics: { latencyMs: 120 + reply.usage.outputTokens * 9 },
            },
            { headers },
          ),
        )
      }
      const failMidway = lastText.includes('midstream-error')
      const frames = converseStreamFrames(reply, { failMidway })
      return ok(
        new Response(byteStream(frames, options.streamChunkBytes, () => void (failMidway ? null : usageLog.push(openAIUsage(reply.usage)))), {
          headers: { ...headers, 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-bedrock-content-type': 'application/json' },
        }),
      )
    },
  })

  return {
    url: `http://127.0.0.1:${server.port}`,
    region,
    accessKeyId: FAKE_ACCESS_KEY_ID,
    secretAccessKey: FAKE_SECRET_ACCESS_KEY,
    temporary: FAKE_TEMPORARY_CREDENTIALS,
    apiKey: FAKE_API_KEY,
    requests,
    responses,
    usageLog,
    stop: () => void server.stop(true),
  }
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

const openAIUsage = (u: FakeReply['usage']) => ({ prompt_tokens: u.inputTokens + (u.cacheReadInputTokens ?? 0), completion_tokens: u.outputTokens })

function scriptedFailure(text: unknown): { status: number; type: string; message: string } | null {
  if (typeof text !== 'string') return null
  const status = Number(/fail-(\d{3})/.exec(text)?.[1])
  const failure = FAILURES[status]
  return failure ? { status, ...failure } : null
}

// ---------------------------------------------------------------------------------------------------------------
// Authentication: SigV4 verification as the service performs it, or a Bedrock API key.

interface AuthContext {
  secrets: Map<string, { secret: string; sessionToken?: string }>
  region: string
  now: number
}

const INVALID_TOKEN = 'The security token included in the request is invalid.'
const SIGNATURE_MISMATCH =
  'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.'
const MAX_SKEW_MS = 5 * 60_000

/** null when the request is authenticated; otherwise the exception AWS would answer with (always a 403). */
function authenticate(req: Request, rawPath: string, search: string, body: Uint8Array, auth: AuthContext): { type: string; message: string } | null {
  const header = req.headers.get('authorization')
  if (!header) return { type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' }
  const bearer = /^Bearer (.+)$/.exec(header)?.[1]
  if (bearer !== undefined) {
    // Bedrock API keys carry a fixed prefix; the exact wording for a malformed one is a guess.
    if (!bearer.startsWith('ABSK')) return { type: 'UnrecognizedClientException', message: 'Invalid API Key format: Must start with pre-defined prefix' }
    return bearer === FAKE_API_KEY ? null : { type: 'UnrecognizedClientException', message: INVALID_TOKEN }
  }
  const fields = /^AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]+)$/.exec(header)
  if (!fields) {
    return { type: 'IncompleteSignatureException', message: `Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' parameters. Authorization=${header.split(' ')[0]}` }
  }
  const [, credential, signedHeaders, signature] = fields as unknown as [string, string, string, string]
  const scope = credential.split('/')
  if (scope.length !== 5 || scope[4] !== 'aws4_request') {
    return { type: 'IncompleteSignatureException', message: `Credential should be scoped with a valid terminator: 'aws4_request', not '${scope.at(-1)}'.` }
  }
  const [accessKeyId, date, scopeRegion, service] = scope as [string, string, string, string]
  const known = auth.secrets.get(accessKeyId)
  if (!known) return { type: 'UnrecognizedClientException', message: INVALID_TOKEN }
  const token = req.headers.get('x-amz-security-token')
  if ((known.sessionToken ?? null) !== token) return { type: 'UnrecognizedClientException', message: INVALID_TOKEN }
  if (service !== 'bedrock') return { type: 'InvalidSignatureException', message: `Credential should be scoped to correct service: 'bedrock'. ` }
  if (scopeRegion !== auth.region) return { type: 'InvalidSignatureException', message: `Credential should be scoped to a valid region. ` }
  const stamp = req.headers.get('x-amz-date')
  if (!stamp || !/^\d{8}T\d{6}Z$/.test(stamp)) {
    return { type: 'IncompleteSignatureException', message: "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header." }
  }
  if (stamp.slice(0, 8) !== date) {
    return { type: 'InvalidSignatureException', message: `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${date}' != '${stamp.slice(0, 8)}', from '${stamp}'.` }
  }
  const signedAt = Date.UTC(+stamp.slice(0, 4), +stamp.slice(4, 6) - 1, +stamp.slice(6, 8), +stamp.slice(9, 11), +stamp.slice(11, 13), +stamp.slice(13, 15))
  if (auth.now - signedAt > MAX_SKEW_MS) {
    return { type: 'InvalidSignatureException', message: `Signature expired: ${stamp} is now earlier than ${basicIso(auth.now - MAX_SKEW_MS)} (${basicIso(auth.now)} - 5 min.)` }
  }
  if (signedAt - auth.now > MAX_SKEW_MS) {
    return { type: 'InvalidSignatureException', message: `Signature not yet current: ${stamp} is still later than ${basicIso(auth.now + MAX_SKEW_MS)} (${basicIso(auth.now)} + 5 min.)` }
  }
  const names = signedHeaders.split(';')
  if (!names.includes('host')) return { type: 'InvalidSignatureException', message: "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization." }

  const canonicalRequest = [
    req.method,
    rawPath.split('/').map(awsEscape).join('/') || '/',
    canonicalQueryString(search),
    names.map((name) => `${name}:${(req.headers.get(name) ?? '').trim().replace(/\s+/g, ' ')}\n`).join(''),
    signedHeaders,
    createHash('sha256').update(body).digest('hex'),
  ].join('\n')
  const stringToSign = `AWS4-HMAC-SHA256\n${stamp}\n${date}/${scopeRegion}/${service}/aws4_request\n${createHash('sha256').update(canonicalRequest).digest('hex')}`
  let key: Buffer = createHmac('sha256', `AWS4${known.secret}`).update(date).digest()
  for (const part of [scopeRegion, service, 'aws4_request']) key = createHmac('sha256', key).update(part).digest()
  const expected = createHmac('sha256', key).update(stringToSign).digest()
  const given = Buffer.from(signature, 'hex')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    // Real AWS adds what it computed, which is how one debugs a signer.
    return {
      type: 'InvalidSignatureException',
      message: `${SIGNATURE_MISMATCH}\n\nThe Canonical String for this request should have been\n'${canonicalRequest}'\n\nThe String-to-Sign should have been\n'${stringToSign}'\n`,
    }
  }
  return null
}

const basicIso = (ms: number) => new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+/, '')

/** Byte-wise RFC 3986 escaping: unreserved ASCII stays, every other UTF-8 byte (`%` included) becomes %XX. */
function awsEscape(value: string): string {
  let out = ''
  for (const byte of encoder.encode(value)) {
    const unreserved = (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a) || (byte >= 0x30 && byte <= 0x39) || byte === 0x2d || byte === 0x2e || byte === 0x5f || byte === 0x7e
    out += unreserved ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

function canonicalQueryString(search: string): string {
  const params = [...new URLSearchParams(search)].map(([k, v]) => `${awsEscape(k)}=${awsEscape(v)}`)
  return params.sort().join('&')
}

// ---------------------------------------------------------------------------------------------------------------
// Request validation: the checks of the real API a translating adapter can get wrong.

const constraint = (value: unknown, where: string, rule: string) => `1 validation error detected: Value '${value}' at '${where}' failed to satisfy constraint: ${rule}`

function validateConverse(body: any): string | null {
  for (const key of Object.keys(body)) {
    if (!CONVERSE_KEYS.has(key)) return `Malformed input request: extraneous key [${key}] is not permitted, please reformat your input and try again.`
  }
  const messages = body.messages
  if (!Array.isArray(messages) || messages.length === 0 || messages[0]?.role !== 'user') {
    return 'A conversation must start with a user message. Try again with a conversation that starts with a user message.'
  }
  if (body.system !== undefined) {
    if (!Array.isArray(body.system)) return constraint(body.system, 'system', 'Member must be a list')
    for (const [i, b] of body.system.entries()) {
      if (typeof b?.text !== 'string' && !b?.cachePoint && !b?.guardContent) return `The system field at system.${i} must contain text.`
      if (typeof b?.text === 'string' && !b.text.trim()) return `The text field in the SystemContentBlock object at system.${i} is blank. Add text to the text field, and try again.`
    }
  }
  let usesTools = false
  for (const [i, m] of messages.entries()) {
    if (m?.role !== 'user' && m?.role !== 'assistant') return constraint(m?.role, `messages.${i}.member.role`, 'Member must satisfy enum value set: [user, assistant]')
    if (i > 0 && messages[i - 1].role === m.role) {
      return 'A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.'
    }
    if (!Array.isArray(m.content) || m.content.length === 0) {
      return `The content field in the Message object at messages.${i} is empty. Add a ContentBlock object to the content field and try again.`
    }
    for (const [j, b] of m.content.entries()) {
      const keys = b && typeof b === 'object' ? Object.keys(b) : []
      if (keys.length !== 1 || !BLOCK_KEYS.has(keys[0]!)) return `Malformed input request: #/messages/${i}/content/${j}: ContentBlock must set exactly one member, please reformat your input and try again.`
      if ('text' in b && (typeof b.text !== 'string' || !b.text.trim())) {
        return `The text field in the ContentBlock object at messages.${i}.content.${j} is blank. Add text to the text field, and try again.`
      }
      if ('image' in b) {
        if (!IMAGE_FORMATS.has(b.image?.format)) return constraint(b.image?.format, `messages.${i}.member.content.${j}.member.image.format`, 'Member must satisfy enum value set: [png, jpeg, gif, webp]')
        const bytes = b.image?.source?.bytes
        if (typeof bytes !== 'string' || !bytes || !/^[A-Za-z0-9+/]+={0,2}$/.test(bytes)) return `Invalid base64 in messages.${i}.content.${j}.image.source.bytes.`
      }
      if ('toolUse' in b) {
        usesTools = true
        if (m.role !== 'assistant') return `The toolUse block at messages.${i}.content.${j} is only allowed in an assistant message.`
        if (typeof b.toolUse?.toolUseId !== 'string' || typeof b.toolUse?.name !== 'string' || typeof b.toolUse?.input !== 'object' || b.toolUse.input === null) {
          return `Malformed input request: #/messages/${i}/content/${j}/toolUse: toolUseId, name and an input object are required, please reformat your input and try again.`
        }
      }
      if ('toolResult' in b) {
        usesTools = true
        if (m.role !== 'user') return `The toolResult block at messages.${i}.content.${j} is only allowed in a user message.`
        if (!Array.isArray(b.toolResult?.content)) return `Malformed input request: #/messages/${i}/content/${j}/toolResult: content is required, please reformat your input and try again.`
        for (const [k, c] of b.toolResult.content.entries()) {
          const members = c && typeof c === 'object' ? Object.keys(c) : []
          if (members.length !== 1 || !TOOL_RESULT_KEYS.has(members[0]!)) {
            return `Malformed input request: #/messages/${i}/content/${j}/toolResult/content/${k}: ToolResultContentBlock must set exactly one member, please reformat your input and try again.`
          }
          if ('image' in c && !IMAGE_FORMATS.has(c.image?.format)) return constraint(c.image?.format, `messages.${i}.member.content.${j}.member.toolResult.content.${k}.member.image.format`, 'Member must satisfy enum value set: [png, jpeg, gif, webp]')
        }
      }
    }
    // Every toolUse must be answered in the next (user) message, and a toolResult must answer one.
    const results = m.content.filter((b: any) => 'toolResult' in b).map((b: any) => b.toolResult.toolUseId)
    if (results.length > 0) {
      const asked = messages[i - 1]?.content.filter((b: any) => 'toolUse' in b).map((b: any) => b.toolUse.toolUseId) ?? []
      if (results.length > asked.length) return `The number of toolResult blocks at messages.${i}.content exceeds the number of toolUse blocks of previous turn.`
      const missing = asked.filter((id: string) => !results.includes(id))
      if (missing.length > 0) return `Expected toolResult blocks at messages.${i}.content for the following Ids: ${missing.join(', ')}`
    }
  }
  if (usesTools && body.toolConfig === undefined) return 'The toolConfig field must be defined when using toolUse and toolResult content blocks.'
  const inference = body.inferenceConfig
  if (inference !== undefined) {
    for (const key of Object.keys(inference)) {
      if (!['maxTokens', 'temperature', 'topP', 'stopSequences'].includes(key)) return `Malformed input request: extraneous key [${key}] is not permitted, please reformat your input and try again.`
    }
    if (inference.maxTokens !== undefined && (!Number.isInteger(inference.maxTokens) || inference.maxTokens < 1)) {
      return constraint(inference.maxTokens, 'inferenceConfig.maxTokens', 'Member must have value greater than or equal to 1')
    }
    for (const key of ['temperature', 'topP'] as const) {
      const v = inference[key]
      if (v !== undefined && (typeof v !== 'number' || v < 0 || v > 1)) return constraint(v, `inferenceConfig.${key}`, 'Member must have value less than or equal to 1')
    }
    if (inference.stopSequences !== undefined && (!Array.isArray(inference.stopSequences) || inference.stopSequences.some((s: unknown) => typeof s !== 'string' || !s))) {
      return constraint(inference.stopSequences, 'inferenceConfig.stopSequences', 'Member must have length greater than or equal to 1')
    }
  }
  const toolConfig = body.toolConfig
  if (toolConfig !== undefined) {
    if (!Array.isArray(toolConfig.tools) || toolConfig.tools.length === 0) return constraint('[]', 'toolConfig.tools', 'Member must have length greater than or equal to 1')
    const names: string[] = []
    for (const [i, tool] of toolConfig.tools.entries()) {
      const spec = tool?.toolSpec
      if (!spec || typeof spec.name !== 'string' || !/^[a-zA-Z0-9_-]{1,64}$/.test(spec.name)) {
        return constraint(spec?.name, `toolConfig.tools.${i}.member.toolSpec.name`, 'Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+')
      }
      if (!spec.inputSchema || typeof spec.inputSchema.json !== 'object' || spec.inputSchema.json === null) {
        return `Malformed input request: #/toolConfig/tools/${i}/toolSpec/inputSchema: json is required, please reformat your input and try again.`
      }
      names.push(spec.name)
    }
    const choice = toolConfig.toolChoice
    if (choice !== undefined) {
      const keys = Object.keys(choice ?? {})
      if (keys.length !== 1 || !['auto', 'any', 'tool'].includes(keys[0]!)) return 'Malformed input request: #/toolConfig/toolChoice: exactly one of auto, any, tool must be set, please reformat your input and try again.'
      if (choice.tool && !names.includes(choice.tool.name)) return `The tool ${choice.tool.name} specified in toolChoice is not defined in toolConfig.tools.`
    }
  }
  return null
}

function validateTitan(body: any, modelId: string): string | null {
  const allowed = /titan-embed-(?:text-v1|g1-text)/.test(modelId) ? ['inputText'] : ['inputText', 'dimensions', 'normalize', 'embeddingTypes']
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) return `Malformed input request: extraneous key [${key}] is not permitted, please reformat your input and try again.`
  }
  if (typeof body.inputText !== 'string') return 'Malformed input request: #: required key [inputText] not found, please reformat your input and try again.'
  if (body.inputText.length === 0) return 'Malformed input request: #/inputText: expected minLength: 1, actual: 0, please reformat your input and try again.'
  if (body.dimensions !== undefined && ![256, 512, 1024].includes(body.dimensions)) {
    return `Malformed input request: #/dimensions: ${body.dimensions} is not a valid enum value, please reformat your input and try again.`
  }
  if (body.normalize !== undefined && typeof body.normalize !== 'boolean') return 'Malformed input request: #/normalize: expected type: Boolean, please reformat your input and try again.'
  return null
}

// ---------------------------------------------------------------------------------------------------------------
// Replies.

/** `ceil(chars / 4)`, the fake's token count. */
export const fakeTokens = (text: string) => Math.ceil(text.length / 4)

/** Word-sized pieces (leading space kept, as tokenizers do); runs of non-ASCII characters (CJK, emoji) get pieces of their own. */
export function splitPieces(text: string): string[] {
  return text.match(/\s*(?:[!-~]+|[^\s\x00-\x7f]+)|\s+$/gu) ?? []
}

/** Characters of prompt text (system, text blocks, tool specs, tool inputs and results). */
function promptChars(body: any): number {
  let chars = 0
  for (const b of body.system ?? []) if (typeof b.text === 'string') chars += b.text.length
  for (const m of body.messages) {
    for (const b of m.content) {
      if (typeof b.text === 'string') chars += b.text.length
      else if (b.toolUse) chars += JSON.stringify(b.toolUse.input).length
      else if (b.toolResult) chars += JSON.stringify(b.toolResult.content).length
      else if (b.image) chars += 340 // ~85 tokens, a small image
    }
  }
  for (const t of body.toolConfig?.tools ?? []) chars += JSON.stringify(t).length
  return chars
}

function scriptedReply(body: any, lastBlocks: any[], lastText: string): FakeReply {
  const promptText = JSON.stringify(body.messages) + JSON.stringify(body.system ?? '')
  const cacheRead = promptText.includes('cache-hit') ? FAKE_CACHE_READ_TOKENS : undefined
  const inputTokens = fakeTokens('x'.repeat(promptChars(body)))
  let reply: Omit<FakeReply, 'usage'> & { outputTokens: number }
  if (lastBlocks.some((b) => 'toolResult' in b)) reply = textReply(FAKE_TOOL_RESULT_REPLY, body.inferenceConfig)
  else if (Array.isArray(body.toolConfig?.tools) && body.toolConfig.tools.length > 0 && lastText.includes('weather')) reply = toolReply()
  else if (lastText.includes('finish-length')) reply = textReply(FAKE_REPLY, { ...body.inferenceConfig, maxTokens: Math.min(3, body.inferenceConfig?.maxTokens ?? 3) })
  else reply = textReply(FAKE_REPLY, body.inferenceConfig)
  const usage: FakeReply['usage'] = { inputTokens, outputTokens: reply.outputTokens, totalTokens: inputTokens + reply.outputTokens + (cacheRead ?? 0) }
  if (cacheRead !== undefined) usage.cacheReadInputTokens = cacheRead
  return { blocks: reply.blocks, pieces: reply.pieces, stopReason: reply.stopReason, usage }
}

function textReply(full: string, inference: any = {}): Omit<FakeReply, 'usage'> & { outputTokens: number } {
  let text = full
  let stopReason: FakeReply['stopReason'] = 'end_turn'
  for (const seq of Array.isArray(inference?.stopSequences) ? inference.stopSequences : []) {
    const at = text.indexOf(seq)
    if (at !== -1) {
      text = text.slice(0, at)
      stopReason = 'stop_sequence'
    }
  }
  let pieces = splitPieces(text)
  if (typeof inference?.maxTokens === 'number' && pieces.length > inference.maxTokens) {
    pieces = pieces.slice(0, inference.maxTokens)
    stopReason = 'max_tokens'
  }
  return { blocks: [{ text: pieces.join('') }], pieces: [pieces], stopReason, outputTokens: pieces.length }
}

function toolReply(): Omit<FakeReply, 'usage'> & { outputTokens: number } {
  const json = JSON.stringify(FAKE_TOOL_INPUT)
  // Input arrives as fragments that are not valid JSON on their own.
  const fragments = [json.slice(0, 5), json.slice(5, 12), json.slice(12)]
  return {
    blocks: [{ toolUse: { toolUseId: randomId('tooluse_', 22), name: 'get_weather', input: { ...FAKE_TOOL_INPUT } } }],
    pieces: [fragments],
    stopReason: 'tool_use',
    outputTokens: 14,
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The binary event stream.

/** One event-stream message with string headers (value type 7), in the given header order. */
export function encodeFrame(headers: [string, string][], payload: Uint8Array | string): Uint8Array {
  const body = typeof payload === 'string' ? encoder.encode(payload) : payload
  const encodedHeaders = headers.map(([name, value]) => {
    const n = encoder.encode(name)
    const v = encoder.encode(value)
    const out = new Uint8Array(1 + n.length + 1 + 2 + v.length)
    out[0] = n.length
    out.set(n, 1)
    out[1 + n.length] = 7
    new DataView(out.buffer).setUint16(2 + n.length, v.length)
    out.set(v, 4 + n.length)
    return out
  })
  const headersLength = encodedHeaders.reduce((sum, h) => sum + h.length, 0)
  const total = 16 + headersLength + body.length
  const frame = new Uint8Array(total)
  const view = new DataView(frame.buffer)
  view.setUint32(0, total)
  view.setUint32(4, headersLength)
  view.setUint32(8, crc32(frame.subarray(0, 8)))
  let at = 12
  for (const h of encodedHeaders) {
    frame.set(h, at)
    at += h.length
  }
  frame.set(body, at)
  view.setUint32(total - 4, crc32(frame.subarray(0, total - 4)))
  return frame
}

const PADDING = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'

/** An event frame as ConverseStream sends it; the `p` field pads payloads to hide their length. */
export function eventFrame(type: string, payload: Record<string, unknown>): Uint8Array {
  const p = PADDING.slice(0, 5 + ((JSON.stringify(payload).length * 7) % 50))
  return encodeFrame(
    [
      [':event-type', type],
      [':content-type', 'application/json'],
      [':message-type', 'event'],
    ],
    JSON.stringify({ ...payload, p }),
  )
}

export function exceptionFrame(type: string, payload: Record<string, unknown>): Uint8Array {
  return encodeFrame(
    [
      [':exception-type', type],
      [':content-type', 'application/json'],
      [':message-type', 'exception'],
    ],
    JSON.stringify(payload),
  )
}

/** The frames ConverseStream sends for a reply: no contentBlockStart for text blocks, as the real service. */
export function converseStreamFrames(reply: FakeReply, options: { failMidway?: boolean } = {}): Uint8Array[] {
  const frames = [eventFrame('messageStart', { role: 'assistant' })]
  for (const [index, block] of reply.blocks.entries()) {
    if ('toolUse' in block) {
      frames.push(eventFrame('contentBlockStart', { contentBlockIndex: index, start: { toolUse: { toolUseId: block.toolUse.toolUseId, name: block.toolUse.name } } }))
    }
    for (const [n, piece] of (reply.pieces[index] ?? []).entries()) {
      if (options.failMidway && n === 2) {
        frames.push(
          exceptionFrame('modelStreamErrorException', {
            message: 'The model encountered an error while streaming the response. (midstream-error)',
            originalStatusCode: 500,
            originalMessage: 'Internal error',
          }),
        )
        return frames
      }
      frames.push(eventFrame('contentBlockDelta', { contentBlockIndex: index, delta: 'toolUse' in block ? { toolUse: { input: piece } } : { text: piece } }))
    }
    frames.push(eventFrame('contentBlockStop', { contentBlockIndex: index }))
  }
  frames.push(eventFrame('messageStop', { stopReason: reply.stopReason }))
  frames.push(eventFrame('metadata', { usage: reply.usage, metrics: { latencyMs: 120 + reply.usage.outputTokens * 9 } }))
  return frames
}

/** One write per frame, or fixed-size byte pieces when asked; `beforeLast` runs before the last write. */
function byteStream(frames: Uint8Array[], chunkBytes: number | undefined, beforeLast: () => void): ReadableStream<Uint8Array> {
  let parts: Uint8Array[] = frames
  if (chunkBytes && chunkBytes > 0) {
    const all = new Uint8Array(frames.reduce((n, f) => n + f.length, 0))
    let at = 0
    for (const f of frames) {
      all.set(f, at)
      at += f.length
    }
    parts = []
    for (let i = 0; i < all.length; i += chunkBytes) parts.push(all.subarray(i, i + chunkBytes))
  }
  let next = 0
  return new ReadableStream({
    async pull(controller) {
      if (next >= parts.length) return controller.close()
      if (next === parts.length - 1) beforeLast()
      controller.enqueue(parts[next++]!)
      await Bun.sleep(1) // separate network writes, as a real upstream produces them
    },
  })
}

/** The deterministic vector the fake returns for `text`: float32-exact values, unit length when normalized. */
export function fakeEmbedding(text: string, dimensions = FAKE_EMBEDDING_DIMENSIONS, normalize = true): number[] {
  let seed = 0x811c9dc5 // FNV-1a over UTF-16 units
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 0x01000193)
  const raw: number[] = []
  for (let i = 0; i < dimensions; i++) {
    // xorshift32
    seed ^= seed << 13
    seed ^= seed >>> 17
    seed ^= seed << 5
    raw.push(((seed >>> 0) / 4294967296) * 2 - 1)
  }
  const norm = normalize ? Math.hypot(...raw) || 1 : 1
  return raw.map((v) => Math.fround(v / norm))
}
