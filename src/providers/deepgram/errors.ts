import { GatewayError } from '../../plugin-sdk/index.ts'

/** `Bad Request` → `bad_request`, `INVALID_AUTH` → `invalid_auth`. */
const codeOf = (value: unknown) => (typeof value === 'string' && value ? value.trim().toLowerCase().replace(/[^a-z0-9]+/g, '_') : null)

/** Deepgram query parameters → the OpenAI names a client sent, for `param`. */
const PARAMS: Record<string, string> = { model: 'model', language: 'language', speed: 'speed', encoding: 'response_format', container: 'response_format', text: 'input' }

/**
 * Deepgram's two error shapes → our envelope: `{err_code, err_msg, request_id}` (most endpoints) and
 * `{category, message, details, request_id}` (JSON bodies it could not read, speech). Audio it cannot decode is a
 * 400 `invalid_audio_file` on `file`; an account out of credit (402) a 429 `insufficient_quota`, as OpenAI reports
 * it, which another target may serve.
 */
export function parseError(status: number, body: unknown, _headers: Headers): GatewayError {
  const b = body as any
  let message: string
  let code: string | null = null
  if (b && typeof b === 'object' && (typeof b.err_msg === 'string' || typeof b.err_code === 'string')) {
    message = typeof b.err_msg === 'string' && b.err_msg ? b.err_msg : String(b.err_code)
    code = codeOf(b.err_code)
  } else if (b && typeof b === 'object' && (typeof b.message === 'string' || typeof b.category === 'string')) {
    message = typeof b.message === 'string' && b.message ? b.message : String(b.category)
    if (typeof b.details === 'string' && b.details) message += ` ${b.details}`
    code = codeOf(b.category)
  } else if (typeof body === 'string' && body.length > 0) {
    message = body.slice(0, 500)
  } else {
    message = `deepgram returned HTTP ${status}`
  }
  if (status === 402 || code === 'asr_payment_required' || code === 'insufficient_credits') {
    return new GatewayError(429, message, { type: 'insufficient_quota', code: code ?? 'insufficient_quota' })
  }
  if (status === 400 && /failed to process audio|corrupt or unsupported data/i.test(message)) {
    return new GatewayError(400, message, { param: 'file', code: 'invalid_audio_file' })
  }
  const named = /\b(model|language|speed|encoding|container|text)\b/.exec(message)?.[1]
  return new GatewayError(status, message, { code, param: status === 400 && named ? PARAMS[named]! : null })
}
