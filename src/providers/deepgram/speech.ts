import { badRequest, type AttemptContext, type ProviderConfig, type UpstreamRequest } from '../../plugin-sdk/index.ts'
import { OUTPUT_FORMATS, authHeaders, baseURL } from './shared.ts'

/** Deepgram's Aura-2 speed control takes 0.7 to 1.5 ("TTS Voice Controls"). */
const MIN_SPEED = 0.7
const MAX_SPEED = 1.5

const HANDLED = new Set(['model', 'input', 'voice', 'response_format', 'speed', 'stream_format'])

/**
 * Deepgram has no voices apart from models: each Aura model is one voice. The request's `voice` picks the model when
 * the admin mapped it in `options.voices` (`{"alloy": "aura-2-thalia-en"}`), when it names an Aura model itself
 * (`aura-2-zeus-en`) or is given as `{id}`; otherwise the target's model speaks.
 */
export function speakModel(provider: ProviderConfig, voice: unknown, targetModel: string): string {
  if (voice && typeof voice === 'object' && typeof (voice as any).id === 'string' && (voice as any).id) return (voice as any).id
  if (typeof voice !== 'string') return targetModel
  const voices = provider.options.voices
  const mapped = voices && typeof voices === 'object' ? (voices as Record<string, unknown>)[voice] : undefined
  if (typeof mapped === 'string' && mapped) return mapped
  if (/^aura-/i.test(voice)) return voice
  return targetModel
}

/** OpenAI speech request → Deepgram `POST /v1/speak?model=…&encoding=…` with `{text}`; the audio streams back as it is made. */
export function buildSpeechRequest(body: Record<string, any>, ctx: AttemptContext): UpstreamRequest {
  const { provider, model } = ctx.target
  const format = OUTPUT_FORMATS[body.response_format ?? 'mp3']
  if (!format) throw badRequest(`The provider '${provider.name}' cannot produce '${body.response_format}' audio.`, 'response_format', 'unsupported_value')
  const query = new URLSearchParams({ model: speakModel(provider, body.voice, model), ...format })
  // Outside its range Deepgram refuses the request; the nearest speed it takes is the closest rendition.
  if (typeof body.speed === 'number' && body.speed !== 1) query.set('speed', String(Math.min(Math.max(body.speed, MIN_SPEED), MAX_SPEED)))
  for (const name in body) {
    const value = body[name]
    if (HANDLED.has(name) || value === undefined || value === null) continue
    // `instructions` has no Deepgram equivalent.
    ctx.dropParam(name)
  }
  return {
    url: `${baseURL(provider)}/v1/speak?${query}`,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeaders(provider) },
    body: JSON.stringify({ text: body.input }),
  }
}
