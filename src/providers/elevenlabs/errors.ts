import { GatewayError } from '../../plugin-sdk/index.ts'

/** ElevenLabs request fields → the OpenAI names a client sent, for `param`. */
const PARAMS: Record<string, string> = {
  text: 'input',
  model_id: 'model',
  voice_id: 'voice',
  output_format: 'response_format',
  'voice_settings.speed': 'speed',
  speed: 'speed',
  file: 'file',
  language_code: 'language',
  temperature: 'temperature',
}

/** Codes (`code`, or the legacy `status`) that a 401 carries when the account, not the key, is the problem. */
const QUOTA_CODES = new Set(['quota_exceeded', 'insufficient_credits', 'payment_required'])

/**
 * ElevenLabs error bodies → our envelope. Two shapes: `{"detail": {type, code, message, status, request_id, param}}`
 * (older answers carry `status` and `message` only) and FastAPI's 422 `{"detail": [{loc, msg, type}]}`, which is a
 * 400 to OpenAI clients. A used-up character quota comes as a 401; it is a 429 `insufficient_quota` here, as OpenAI
 * reports it, so it is neither mistaken for a bad key nor kept from falling back to another target.
 */
export function parseError(status: number, body: unknown, _headers: Headers): GatewayError {
  const detail = (body as any)?.detail
  if (Array.isArray(detail) && detail.length > 0) {
    const first = detail[0]
    const loc: unknown[] = Array.isArray(first?.loc) ? first.loc : []
    const field = loc.filter((part) => part !== 'body' && part !== 'query' && part !== 'path').join('.')
    const message = detail
      .map((d: any) => {
        const where = Array.isArray(d?.loc) ? d.loc.filter((p: unknown) => p !== 'body' && p !== 'query' && p !== 'path').join('.') : ''
        return where ? `${where}: ${d?.msg ?? 'invalid'}` : String(d?.msg ?? 'invalid')
      })
      .join('; ')
    return new GatewayError(status === 422 ? 400 : status, message, { param: field ? (PARAMS[field] ?? field) : null, code: 'invalid_parameters' })
  }
  let message: string
  let code: string | null = null
  let param: string | null = null
  if (detail && typeof detail === 'object') {
    code = typeof detail.code === 'string' ? detail.code : typeof detail.status === 'string' ? detail.status : null
    message = typeof detail.message === 'string' && detail.message ? detail.message : (code ?? `elevenlabs returned HTTP ${status}`)
    if (typeof detail.param === 'string' && detail.param) param = PARAMS[detail.param] ?? detail.param
  } else if (typeof detail === 'string' && detail) {
    message = detail
  } else if (typeof body === 'string' && body.length > 0) {
    message = body.slice(0, 500)
  } else {
    message = `elevenlabs returned HTTP ${status}`
  }
  if (code === 'voice_not_found') param = 'voice'
  if (code && QUOTA_CODES.has(code)) return new GatewayError(429, message, { type: 'insufficient_quota', code })
  return new GatewayError(status === 422 ? 400 : status, message, { code, param })
}
