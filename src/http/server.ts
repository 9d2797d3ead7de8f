import type { Gateway } from '../core/gateway.ts'
import { inContext } from '../plugin-sdk/errors.ts'
import { createApp, type EdgeOptions } from './app.ts'

export interface ListenOptions extends EdgeOptions {
  port: number
  hostname: string
  /** Seconds a connection may sit idle (Bun caps it at 255). LLM routes lift it per request. */
  idleTimeoutSec: number
  /** Several worker processes bind the same port; the kernel spreads connections. */
  reusePort?: boolean
  /** PEM file paths: every endpoint over TLS. */
  tls?: { cert: string; key: string }
}

export function listen(gw: Gateway, options: ListenOptions) {
  const app = createApp(gw, options)
  try {
    app.listen({
      port: options.port,
      hostname: options.hostname,
      // No cap from Bun: past it Bun answers 413 itself, with an empty body, before our code sees the request.
      // Every body we read is bounded as it arrives (the pipeline's reader, the admin parser: a JSON 413), and
      // a body nobody reads is discarded by Bun as it comes (a 50 MB upload answered early: +3 MB at peak).
      maxRequestBodySize: Number.MAX_SAFE_INTEGER,
      // Short by default (slowloris guard); LLM routes lift it per request after authentication.
      idleTimeout: options.idleTimeoutSec,
      reusePort: options.reusePort ?? false,
      ...(options.tls ? { tls: { cert: Bun.file(options.tls.cert), key: Bun.file(options.tls.key) } } : {}),
      // Realtime sessions: Bun's own WebSocket handlers, without Elysia's per-message parsing (frames are relayed as they are).
      websocket: gw.pipeline.realtime.websocket,
    })
  } catch (error) {
    // Bun's own words (`EINVAL`, `PEM routines`) say nothing of which setting was wrong.
    const settings = options.tls ? 'HOST, PORT, CONDUIT_TLS_CERT and CONDUIT_TLS_KEY (or server.tls)' : 'HOST and PORT'
    throw inContext(`Cannot listen on ${options.hostname}:${options.port} (see ${settings})`, error)
  }
  return app.server!
}
