/**
 * Failures in Anthropic's envelope, `{"type":"error","error":{"type","message"}}`, with its statuses. A native
 * upstream error keeps the type Anthropic gave it (the adapter passes it on as the code). The gateway's own
 * 5xx: 502 stays a 502 `api_error`, 503 (at capacity, upstream unavailable) is Anthropic's 529 `overloaded_error`
 * that its clients back off and retry on, 504 is `timeout_error`. A spent budget is 402 `billing_error`.
 */

const TYPE_OF_STATUS: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'billing_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  503: 'overloaded_error',
  504: 'timeout_error',
}

const ANTHROPIC_TYPES = new Set([...Object.values(TYPE_OF_STATUS), 'api_error', 'conflict_error'])

export const OVERLOADED_STATUS = 529

export function errorType(status: number, code: string | null | undefined): string {
  if (code && ANTHROPIC_TYPES.has(code)) return code
  return TYPE_OF_STATUS[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error')
}

export function renderMessagesError(status: number, error: { message: string; code?: string | null }): { status: number; body: unknown } {
  // A spent budget (OpenAI's 429 insufficient_quota) is Anthropic's 402: money, not a rate its clients wait out.
  if (error.code === 'insufficient_quota') return { status: 402, body: { type: 'error', error: { type: 'billing_error', message: error.message } } }
  const type = errorType(status, error.code)
  return { status: type === 'overloaded_error' ? OVERLOADED_STATUS : status, body: { type: 'error', error: { type, message: error.message } } }
}
