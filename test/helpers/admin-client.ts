import { MASTER_KEY } from './gateway.ts'

/** The admin API of a gateway at `origin`, called with the master key; answers the parsed JSON, throws on non-2xx. */
export const adminClient =
  (origin: string, masterKey = MASTER_KEY) =>
  async <T = any>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${origin}/admin/v1${path}`, {
      method,
      headers: { authorization: `Bearer ${masterKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    if (!res.ok) throw new Error(`admin ${method} ${path} → ${res.status}: ${await res.text()}`)
    return (await res.json()) as T
  }
