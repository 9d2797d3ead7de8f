import type { GeminiPart } from './types.ts'

/**
 * OpenAI tool calls need ids; Gemini's generateContent gives none, so we make `call_<random>` ones. Gemini 3
 * (and 2.5 with thinking) also attaches a `thoughtSignature` to a function-call part and refuses the next turn
 * unless that signature comes back on the same part. OpenAI clients echo only the id, so the signature rides
 * inside it (`call_…__ts__<base64url>`): stateless, so any worker or instance can serve the next turn.
 */
const MARK = '__ts__'
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

export function randomId(prefix: string, length = 24): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length))
  let out = prefix
  for (const b of bytes) out += BASE62[b % 62]
  return out
}

/** The OpenAI id of a function-call part: the part's own id when it has one, else a fresh `call_…`. */
export function toolCallId(part: GeminiPart): string {
  const base = part.functionCall?.id || randomId('call_')
  // base64url keeps the id within [A-Za-z0-9_-], the alphabet other providers accept for tool ids.
  return part.thoughtSignature ? base + MARK + part.thoughtSignature.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '') : base
}

/** The signature carried by an id made by `toolCallId`, back in standard padded base64; undefined when none. */
export function thoughtSignatureOf(id: string): string | undefined {
  const at = id.indexOf(MARK)
  if (at === -1) return undefined
  const b64 = id.slice(at + MARK.length).replace(/-/g, '+').replace(/_/g, '/')
  if (!b64) return undefined
  return b64 + '='.repeat((4 - (b64.length % 4)) % 4)
}
