import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'
import { startFakeRealtime, type FakeRealtime } from '../helpers/fake-realtime.ts'
import type { GatewayConfig } from '../../src/config/config.ts'

export interface RealtimeSetup {
  gw: TestGateway
  fake: FakeRealtime
  /** ws:// or wss:// origin of the gateway. */
  wsOrigin: string
  /** http:// or https:// origin of the gateway. */
  origin: string
  /** The admin API with the master key (over TLS when the gateway serves it). */
  admin(method: string, path: string, body?: unknown): Promise<any>
  key(options?: Record<string, unknown>): Promise<string>
  close(): Promise<void>
}

/**
 * A gateway (TLS when given a certificate) with a provider of `type` pointing at a fake realtime upstream, and
 * the virtual model `voice` → `gpt-realtime` on it (list prices: gpt-realtime has audio and text rates).
 */
export async function realtimeSetup(options: { tls?: { cert: string; key: string; pem?: string }; type?: string; providerOptions?: Record<string, unknown>; config?: Partial<GatewayConfig>; price?: Record<string, number> } = {}): Promise<RealtimeSetup> {
  const fake = await startFakeRealtime()
  const gw = await startGateway({ ...(options.tls ? { tls: { cert: options.tls.cert, key: options.tls.key } } : {}), ...options.config })
  const port = new URL(gw.origin).port
  const origin = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`
  const admin = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(`${origin}/admin/v1${p}`, {
      method,
      headers: { authorization: `Bearer ${MASTER_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
      ...(options.tls ? { tls: { ca: options.tls.pem } } : {}),
    } as RequestInit)
    const json: any = await res.json()
    if (!res.ok) throw new Error(`admin ${method} ${p} → ${res.status}: ${JSON.stringify(json)}`)
    return json
  }
  const type = options.type ?? 'openai'
  const base = type === 'azure' ? fake.origin : fake.url
  await admin('POST', '/providers', { name: 'rt', type, base_url: base, api_key: fake.key, options: options.providerOptions ?? {} })
  await admin('POST', '/models', { name: 'voice', targets: [{ provider: 'rt', model: 'gpt-realtime', ...(options.price ? { price: options.price } : {}) }] })
  return {
    gw,
    fake,
    origin,
    admin,
    wsOrigin: `${options.tls ? 'wss' : 'ws'}://127.0.0.1:${port}`,
    async key(extra = {}) {
      return (await admin('POST', '/keys', { name: `k-${crypto.randomUUID().slice(0, 8)}`, ...extra })).key
    },
    async close() {
      fake.close()
      await gw.close()
    },
  }
}

/** Events of a raw WebSocket, parsed, with a way to wait for one. */
export class EventLog {
  readonly events: any[] = []
  closed: { code: number; reason: string; at: number } | null = null
  constructor(readonly ws: WebSocket) {
    ws.addEventListener('message', (e) => this.events.push(typeof e.data === 'string' ? JSON.parse(e.data) : e.data))
    ws.addEventListener('close', (e) => (this.closed = { code: e.code, reason: e.reason, at: performance.now() }))
  }
  static async open(url: string, init?: { headers?: Record<string, string>; protocols?: string[] }): Promise<EventLog> {
    const ws = new WebSocket(url, init as any)
    const log = new EventLog(ws)
    await new Promise<void>((resolve, reject) => {
      ws.addEventListener('open', () => resolve())
      ws.addEventListener('error', (e: any) => reject(new Error(e.message ?? 'websocket error')))
    })
    return log
  }
  send(event: Record<string, any>) {
    this.ws.send(JSON.stringify(event))
  }
  async next(type: string, timeoutMs = 5_000, from = 0): Promise<any> {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const found = this.events.slice(from).find((e) => e.type === type)
      if (found) return found
      if (performance.now() > deadline) throw new Error(`no ${type} event in ${timeoutMs} ms; got ${this.events.map((e) => e.type).join(', ')}`)
      await Bun.sleep(5)
    }
  }
  async waitClosed(timeoutMs = 3_000) {
    const deadline = performance.now() + timeoutMs
    while (!this.closed) {
      if (performance.now() > deadline) throw new Error('socket not closed in time')
      await Bun.sleep(5)
    }
    return this.closed
  }
}

/** A WebSocket handshake sent by hand, for refusals: the status line and the JSON body of the HTTP answer. */
export async function handshake(origin: string, pathAndQuery: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(`${origin}${pathAndQuery}`, {
    headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64'), ...headers },
  })
  const text = await response.text()
  let body: any = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: response.status, body, headers: response.headers }
}
