import type { AttemptContext } from './types.ts'

/** Helpers for translating adapters that turn a provider's transcript into OpenAI's (`Transcript`). */

const LANGUAGES = new Intl.DisplayNames(['en'], { type: 'language' })

/** ISO 639 code (`eng`, `en`, `en-US`) → the lowercase English name OpenAI's verbose transcripts carry (`english`). */
export function languageName(code: unknown): string | undefined {
  if (typeof code !== 'string' || !code) return undefined
  const primary = code.split(/[-_]/)[0]!.toLowerCase()
  try {
    return (LANGUAGES.of(primary) ?? primary).toLowerCase()
  } catch {
    return primary
  }
}

/**
 * A speaker as OpenAI's diarized transcripts name them: `A`, `B`, … for the numbered speakers ElevenLabs
 * (`speaker_0`) and Deepgram (`0`) report; a named one (`agent`) as it is.
 */
export function speakerLabel(speaker: unknown): string | undefined {
  const n = typeof speaker === 'number' ? speaker : typeof speaker === 'string' ? Number(/^speaker_(\d+)$/.exec(speaker)?.[1] ?? NaN) : NaN
  if (Number.isInteger(n) && n >= 0) return n < 26 ? String.fromCharCode(65 + n) : `S${n}`
  return typeof speaker === 'string' && speaker ? speaker : undefined
}

/** The transcript format the client asked for: the core asks a translating adapter for `json` and renders the rest. */
export const clientFormat = (body: Record<string, any>, ctx: AttemptContext): unknown => ctx.request.body?.response_format ?? body.response_format
