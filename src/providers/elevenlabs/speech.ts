import { badRequest, type AttemptContext, type ProviderConfig, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { OUTPUT_FORMATS, authHeaders, baseURL } from './shared.ts'

/** OpenAI's built-in voice names: they mean nothing to ElevenLabs unless the admin maps them in `options.voices`. */
export const OPENAI_VOICES = new Set(['alloy', 'ash', 'ballad', 'coral', 'echo', 'fable', 'nova', 'onyx', 'sage', 'shimmer', 'verse', 'marin', 'cedar'])

/** ElevenLabs accepts `voice_settings.speed` from 0.7 to 1.2 (its voice settings reference) and refuses the rest. */
const MIN_SPEED = 0.7
const MAX_SPEED = 1.2

/** Speech request fields this adapter translates (or the core owns); any other one set is dropped and signalled. */
const HANDLED = new Set(['model', 'input', 'voice', 'response_format', 'speed', 'stream_format'])

/**
 * The ElevenLabs voice id for the request's `voice`: `{id}` as given; a name the admin mapped in `options.voices`
 * (`{"alloy": "21m00Tcm4TlvDq8ikWAM"}`) to its id; any other string is taken to be an id already. An OpenAI voice
 * name with no mapping is refused here: ElevenLabs would only answer "voice not found".
 */
export function voiceId(provider: ProviderConfig, voice: unknown): string {
  if (voice && typeof voice === 'object' && typeof (voice as any).id === 'string' && (voice as any).id) return (voice as any).id
  if (typeof voice !== 'string' || voice === '') throw badRequest('voice must be a voice name or an object with an id.', 'voice')
  const voices = provider.options.voices
  const mapped = voices && typeof voices === 'object' ? (voices as Record<string, unknown>)[voice] : undefined
  if (typeof mapped === 'string' && mapped) return mapped
  if (OPENAI_VOICES.has(voice)) {
    throw badRequest(
      `The provider '${provider.name}' (ElevenLabs) has no voice for '${voice}': send an ElevenLabs voice id, or ask the administrator to map '${voice}' in the provider's options.voices.`,
      'voice',
      'unsupported_value',
    )
  }
  return voice
}

/** OpenAI speech request → ElevenLabs `POST /v1/text-to-speech/{voice_id}/stream`, which answers with the audio bytes as they are made. */
export function buildSpeechRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model } = ctx.target
  const format = OUTPUT_FORMATS[body.response_format ?? 'mp3']
  if (!format) throw badRequest(`The provider '${provider.name}' cannot produce '${body.response_format}' audio.`, 'response_format', 'unsupported_value')
  const id = voiceId(provider, body.voice)
  const request: Record<string, any> = { text: body.input, model_id: model }

  const settings: Record<string, unknown> = {}
  const configured = provider.options.voice_settings
  if (configured && typeof configured === 'object') Object.assign(settings, configured)
  // Speeds outside ElevenLabs' range are refused by it; the nearest one it takes is the closest rendition we can give.
  if (typeof body.speed === 'number' && body.speed !== 1) settings.speed = Math.min(Math.max(body.speed, MIN_SPEED), MAX_SPEED)
  if (Object.keys(settings).length > 0) request.voice_settings = settings

  for (const name in body) {
    const value = body[name]
    if (HANDLED.has(name) || value === undefined || value === null) continue
    // `instructions` (tone, accent, pace in words) has no ElevenLabs equivalent on this endpoint.
    ctx.dropParam(name)
  }
  const query = new URLSearchParams({ output_format: format })
  return {
    url: `${baseURL(provider)}/v1/text-to-speech/${encodeURIComponent(id)}/stream?${query}`,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders(provider) },
    body: JSON.stringify(request),
  }
}
