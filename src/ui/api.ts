/**
 * The one door to the server: the public admin API (and the sign-in under /ui/api), with the session cookie the
 * browser holds and, for changes, the CSRF token the session gave out. Nothing is kept in localStorage.
 */

export interface Session {
  role: 'admin' | 'key'
  key: { id: string; name: string } | null
  csrf_token: string
  expires_at: number
}

let csrf = ''
export const setCsrf = (token: string) => void (csrf = token)

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
    readonly param: string | null,
  ) {
    super(message)
  }
}

/** Called when the server says the session is over (401): the app shows the sign-in again. */
let onSignedOut: () => void = () => {}
export const whenSignedOut = (fn: () => void) => void (onSignedOut = fn)

export async function request<T = any>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' }
  if (body !== undefined) headers['content-type'] = 'application/json'
  if (method !== 'GET' && csrf) headers['x-conduit-csrf'] = csrf
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' })
  const text = await res.text()
  let json: any = null
  try {
    json = text ? JSON.parse(text) : null
  } catch {
    json = null
  }
  if (!res.ok) {
    const error = json?.error ?? {}
    if (res.status === 401 && path !== '/ui/api/session') onSignedOut()
    throw new ApiError(res.status, error.message ?? `HTTP ${res.status}`, error.code ?? null, error.param ?? null)
  }
  return json as T
}

export const admin = {
  get: <T = any>(path: string) => request<T>('GET', `/admin/v1${path}`),
  post: <T = any>(path: string, body?: unknown) => request<T>('POST', `/admin/v1${path}`, body ?? {}),
  patch: <T = any>(path: string, body: unknown) => request<T>('PATCH', `/admin/v1${path}`, body),
  del: <T = any>(path: string) => request<T>('DELETE', `/admin/v1${path}`),
}

/**
 * The tabs of a browser share one session cookie: a sign-in or sign-out in one is every tab's. The others reload to
 * show whose session it now is, rather than go on labelled with the identity they started with.
 */
const tabs = typeof BroadcastChannel === 'function' ? new BroadcastChannel('conduit-session') : null
if (tabs) tabs.onmessage = () => location.reload()
const told = <T>(changed: Promise<T>) => changed.finally(() => tabs?.postMessage('changed'))

export const signIn = (key: string) => told(request<Session>('POST', '/ui/api/session', { key }))
export const currentSession = () => request<Session>('GET', '/ui/api/session')
export const signOut = () => told(request('DELETE', '/ui/api/session'))

/** `a=1&b=…` from the set values only. */
export function query(params: Record<string, string | number | null | undefined>) {
  const search = new URLSearchParams()
  for (const [name, value] of Object.entries(params)) if (value !== null && value !== undefined && value !== '') search.set(name, String(value))
  const text = search.toString()
  return text ? `?${text}` : ''
}
