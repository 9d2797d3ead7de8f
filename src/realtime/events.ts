import type { GatewayError } from '../plugin-sdk/errors.ts'

/**
 * The cheap look at a frame: its top-level `type`, without parsing the frame. OpenAI and every SDK write `type`
 * first (`{"type":"input_audio_buffer.append",…`), so that costs a few character compares. A frame written in
 * another order is parsed whole (`parsed` is then set, so it is not parsed twice): the look must never be fooled
 * into letting a `response.create` through ungoverned by a key placed later.
 */
export interface Look {
  type: string | null
  parsed?: Record<string, any>
}

const OPEN = '{"type":"'

export function lookAt(text: string): Look {
  if (text.startsWith(OPEN)) {
    const end = text.indexOf('"', OPEN.length)
    // Event types are plain ASCII names: a backslash means an escape, which the slow path handles.
    if (end > 0) {
      const type = text.slice(OPEN.length, end)
      if (!type.includes('\\')) return { type }
    }
  }
  try {
    const parsed = JSON.parse(text)
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) return { type: typeof parsed.type === 'string' ? parsed.type : null, parsed }
  } catch {}
  return { type: null }
}

export const parse = (text: string, look: Look): Record<string, any> | null => {
  if (look.parsed) return look.parsed
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

let counter = 0
const prefix = `evt_conduit_${crypto.randomUUID().replaceAll('-', '').slice(0, 8)}`
export const eventId = () => prefix + (counter++).toString(36)

/**
 * Our `error` server event, in the shape OpenAI sends (`error.type/code/message/param/event_id`): the client's
 * event it answers is named by `event_id` when it had one.
 */
export function errorEvent(error: GatewayError | { type: string; code: string; message: string }, clientEventId?: string | null): string {
  const body = 'toJSON' in error ? error.toJSON().error : { type: error.type, code: error.code, message: error.message, param: null }
  return JSON.stringify({ type: 'error', event_id: eventId(), error: { ...body, event_id: clientEventId ?? null } })
}

/** Close codes a peer may send (RFC 6455 §7.4): 1005, 1006 and 1015 only describe what happened. */
export function sendableCode(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999)
}

/** A close reason must fit a control frame: 123 bytes of UTF-8. */
export function closeReason(reason: string): string {
  const bytes = Buffer.from(reason)
  if (bytes.length <= 123) return reason
  return new TextDecoder().decode(bytes.subarray(0, 120)).replace(/\uFFFD+$/, '')
}
