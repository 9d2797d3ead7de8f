import { Type as t, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { expectation } from '../core/request-schemas.ts'
import { badRequest } from '../plugin-sdk/errors.ts'
import type { RealtimeAudioFormat, RealtimeProtocol } from '../plugin-sdk/types.ts'

/**
 * Session settings made ahead of the WebSocket (`POST /v1/realtime/sessions` in the beta shape, `POST
 * /v1/realtime/client_secrets` in the GA one) and sent upstream as the first `session.update`, in the vocabulary
 * the client connects with. Only our own settings are converted between the two shapes; events never are.
 */
export interface StoredSettings {
  shape: RealtimeProtocol
  /** The session object as the client gave it, without `model` (the virtual name is kept apart). */
  session: Record<string, any>
}

const open = { additionalProperties: true }
const Format = t.Union([t.Literal('pcm16'), t.Literal('g711_ulaw'), t.Literal('g711_alaw')])
const MaxTokens = t.Union([t.Integer({ minimum: 1, maximum: 4096 }), t.Literal('inf')])

/** OpenAI's beta session request (RealtimeSessionCreateRequest): the fields we read are typed, others pass. */
const BetaSession = t.Object(
  {
    model: t.String({ minLength: 1 }),
    modalities: t.Optional(t.Array(t.Union([t.Literal('text'), t.Literal('audio')]))),
    instructions: t.Optional(t.String()),
    voice: t.Optional(t.String()),
    input_audio_format: t.Optional(Format),
    output_audio_format: t.Optional(Format),
    input_audio_transcription: t.Optional(t.Union([t.Null(), t.Object({}, open)])),
    turn_detection: t.Optional(t.Union([t.Null(), t.Object({}, open)])),
    tools: t.Optional(t.Array(t.Object({}, open))),
    tool_choice: t.Optional(t.Union([t.String(), t.Object({}, open)])),
    temperature: t.Optional(t.Number({ minimum: 0, maximum: 2 })),
    max_response_output_tokens: t.Optional(MaxTokens),
  },
  open,
)

const GaFormat = t.Object({ type: t.Union([t.Literal('audio/pcm'), t.Literal('audio/pcmu'), t.Literal('audio/pcma')]), rate: t.Optional(t.Literal(24000)) }, open)
const GaSession = t.Object(
  {
    type: t.Literal('realtime'),
    model: t.String({ minLength: 1 }),
    output_modalities: t.Optional(t.Array(t.Union([t.Literal('text'), t.Literal('audio')]))),
    instructions: t.Optional(t.String()),
    audio: t.Optional(
      t.Object(
        {
          input: t.Optional(t.Object({ format: t.Optional(GaFormat) }, open)),
          output: t.Optional(t.Object({ format: t.Optional(GaFormat), voice: t.Optional(t.String()) }, open)),
        },
        open,
      ),
    ),
    tools: t.Optional(t.Array(t.Object({}, open))),
    tool_choice: t.Optional(t.Union([t.String(), t.Object({}, open)])),
    max_output_tokens: t.Optional(MaxTokens),
  },
  open,
)
const ClientSecretRequest = t.Object(
  {
    expires_after: t.Optional(t.Object({ anchor: t.Optional(t.Literal('created_at')), seconds: t.Optional(t.Integer({ minimum: 10, maximum: 7200 })) }, open)),
    session: GaSession,
  },
  open,
)

function check(schema: TSchema, body: unknown, prefix = '') {
  if (Value.Check(schema, body)) return
  const error = Value.Errors(schema, body).First()!
  const param = prefix + error.path.replace(/^\//, '').replaceAll('/', '.')
  if (param === '') throw badRequest('The request body must be a JSON object.')
  if (error.value === undefined) throw badRequest(`Missing required parameter: '${param}'.`, param, 'missing_required_parameter')
  throw badRequest(`Invalid value for '${param}': ${expectation(error)}.`, param || null, 'invalid_value')
}

export interface SessionRequest {
  model: string
  settings: StoredSettings
  /** Seconds the secret may wait for its connection, when the request says (GA `expires_after`). */
  ttlSeconds?: number
}

/** `POST /v1/realtime/sessions` (beta shape) or `/client_secrets` (GA shape), checked. */
export function readSessionRequest(body: Record<string, any>, ga: boolean): SessionRequest {
  if (ga) {
    if (body.session?.type === 'transcription') {
      throw badRequest('Transcription sessions are not supported by this gateway; create a realtime session.', 'session.type', 'unsupported_value')
    }
    check(ClientSecretRequest, body)
    const { model, ...session } = body.session
    return { model, settings: { shape: 'ga', session }, ttlSeconds: body.expires_after?.seconds }
  }
  check(BetaSession, body)
  const { model, client_secret: _, ...session } = body
  return { model, settings: { shape: 'beta', session } }
}

const GA_FORMAT: Record<RealtimeAudioFormat, { type: string; rate?: number }> = {
  pcm16: { type: 'audio/pcm', rate: 24000 },
  g711_ulaw: { type: 'audio/pcmu' },
  g711_alaw: { type: 'audio/pcma' },
}
const BETA_FORMAT: Record<string, RealtimeAudioFormat> = { 'audio/pcm': 'pcm16', 'audio/pcmu': 'g711_ulaw', 'audio/pcma': 'g711_alaw' }

export const gaFormat = (format: RealtimeAudioFormat) => ({ ...GA_FORMAT[format] })
/** A GA format object (or a beta name) as the beta name; null for one we do not know. */
export function formatName(format: unknown): RealtimeAudioFormat | null {
  if (typeof format === 'string') return format in GA_FORMAT ? (format as RealtimeAudioFormat) : null
  if (format && typeof format === 'object') return BETA_FORMAT[(format as { type?: string }).type ?? ''] ?? null
  return null
}

const defined = (o: Record<string, any>) => {
  for (const k in o) if (o[k] === undefined) delete o[k]
  return o
}

/** Beta flat fields → GA nested ones. `temperature` has no GA field and is left out. */
function betaToGa(s: Record<string, any>): Record<string, any> {
  const { modalities, voice, speed, input_audio_format, output_audio_format, input_audio_transcription, turn_detection, input_audio_noise_reduction, max_response_output_tokens, temperature: _, ...rest } = s
  const input = defined({
    format: input_audio_format ? gaFormat(input_audio_format) : undefined,
    transcription: input_audio_transcription,
    turn_detection,
    noise_reduction: input_audio_noise_reduction,
  })
  const output = defined({ format: output_audio_format ? gaFormat(output_audio_format) : undefined, voice, speed })
  const audio = defined({ input: Object.keys(input).length ? input : undefined, output: Object.keys(output).length ? output : undefined })
  return defined({
    ...rest,
    type: 'realtime',
    output_modalities: modalities ? (modalities.includes('audio') ? ['audio'] : ['text']) : undefined,
    audio: Object.keys(audio).length ? audio : undefined,
    max_output_tokens: max_response_output_tokens,
  })
}

/** GA nested fields → beta flat ones. */
function gaToBeta(s: Record<string, any>): Record<string, any> {
  const { type: _, output_modalities, audio, max_output_tokens, ...rest } = s
  const input = audio?.input ?? {}
  const output = audio?.output ?? {}
  return defined({
    ...rest,
    modalities: output_modalities ? (output_modalities.includes('audio') ? ['text', 'audio'] : ['text']) : undefined,
    voice: output.voice,
    speed: output.speed,
    input_audio_format: input.format ? (formatName(input.format) ?? undefined) : undefined,
    output_audio_format: output.format ? (formatName(output.format) ?? undefined) : undefined,
    input_audio_transcription: input.transcription,
    turn_detection: input.turn_detection,
    input_audio_noise_reduction: input.noise_reduction,
    max_response_output_tokens: max_output_tokens,
  })
}

/** The session object in the vocabulary the client connects with. */
export function sessionIn(settings: StoredSettings, protocol: RealtimeProtocol): Record<string, any> {
  if (settings.shape === protocol) return structuredClone(settings.session)
  return protocol === 'ga' ? betaToGa(settings.session) : gaToBeta(settings.session)
}

/** The audio formats a session object names (either vocabulary); absent ones are null. */
export function formatsOf(session: Record<string, any> | undefined, protocol: RealtimeProtocol): { input: RealtimeAudioFormat | null; output: RealtimeAudioFormat | null } {
  if (!session) return { input: null, output: null }
  if (protocol === 'beta') return { input: formatName(session.input_audio_format), output: formatName(session.output_audio_format) }
  return { input: formatName(session.audio?.input?.format), output: formatName(session.audio?.output?.format) }
}

/** Sets the formats of a session object (either vocabulary) where it names them. */
export function setFormats(session: Record<string, any>, protocol: RealtimeProtocol, formats: { input?: RealtimeAudioFormat; output?: RealtimeAudioFormat }) {
  if (protocol === 'beta') {
    if (formats.input && 'input_audio_format' in session) session.input_audio_format = formats.input
    if (formats.output && 'output_audio_format' in session) session.output_audio_format = formats.output
    return
  }
  if (formats.input && session.audio?.input?.format) session.audio.input.format = gaFormat(formats.input)
  if (formats.output && session.audio?.output?.format) session.audio.output.format = gaFormat(formats.output)
}

/** The most output tokens a response may have, as the session object says (`inf` and absent: null). */
export function maxOutputOf(session: Record<string, any> | undefined, protocol: RealtimeProtocol): number | null {
  const value = protocol === 'ga' ? session?.max_output_tokens : session?.max_response_output_tokens
  return typeof value === 'number' && value > 0 ? value : null
}

/** `POST /v1/realtime/sessions`'s answer: OpenAI's beta session object with the virtual model and the secret. */
export function betaSessionObject(id: string, model: string, settings: StoredSettings, secret: { value: string; expires_at: number }) {
  const s = sessionIn(settings, 'beta')
  return {
    id,
    object: 'realtime.session',
    model,
    modalities: s.modalities ?? ['text', 'audio'],
    instructions: s.instructions ?? '',
    voice: s.voice ?? 'alloy',
    input_audio_format: s.input_audio_format ?? 'pcm16',
    output_audio_format: s.output_audio_format ?? 'pcm16',
    // Null where OpenAI would leave a field out (its schema has no null there).
    ...(s.input_audio_transcription ? { input_audio_transcription: s.input_audio_transcription } : {}),
    turn_detection: s.turn_detection === undefined ? { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 200 } : s.turn_detection,
    tools: s.tools ?? [],
    tool_choice: s.tool_choice ?? 'auto',
    temperature: s.temperature ?? 0.8,
    max_response_output_tokens: s.max_response_output_tokens ?? 'inf',
    ...pick(s, ['speed', 'tracing', 'input_audio_noise_reduction', 'include', 'truncation', 'prompt']),
    client_secret: secret,
  }
}

/** `POST /v1/realtime/client_secrets`'s answer (GA): the secret and the session it opens. */
export function gaSecretObject(id: string, model: string, settings: StoredSettings, secret: { value: string; expires_at: number }) {
  const s = sessionIn(settings, 'ga')
  const input = s.audio?.input ?? {}
  const output = s.audio?.output ?? {}
  return {
    value: secret.value,
    expires_at: secret.expires_at,
    session: {
      ...s,
      type: 'realtime',
      object: 'realtime.session',
      id,
      model,
      output_modalities: s.output_modalities ?? ['audio'],
      instructions: s.instructions ?? '',
      tools: s.tools ?? [],
      tool_choice: s.tool_choice ?? 'auto',
      max_output_tokens: s.max_output_tokens ?? 'inf',
      tracing: s.tracing ?? null,
      truncation: s.truncation ?? 'auto',
      prompt: s.prompt ?? null,
      expires_at: 0,
      audio: {
        input: {
          format: input.format ?? gaFormat('pcm16'),
          ...(input.transcription ? { transcription: input.transcription } : {}),
          ...(input.noise_reduction ? { noise_reduction: input.noise_reduction } : {}),
          turn_detection: input.turn_detection === undefined ? { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 200, create_response: true, interrupt_response: true } : input.turn_detection,
        },
        output: { format: output.format ?? gaFormat('pcm16'), voice: output.voice ?? 'alloy', speed: output.speed ?? 1 },
      },
      ...(s.include ? { include: s.include } : {}),
    },
  }
}

const pick = (o: Record<string, any>, names: string[]) => Object.fromEntries(names.filter((n) => o[n] !== undefined).map((n) => [n, o[n]]))
