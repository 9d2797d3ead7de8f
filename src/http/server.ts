import type { Gateway } from '../core/gateway.ts'
import { createApp } from './app.ts'

export interface ListenOptions {
  port: number
  hostname: string
  maxBodyBytes: number
  /** Seconds a connection may sit idle (Bun caps it at 255). LLM routes lift it per request. */
  idleTimeoutSec: number
  /** Several worker processes bind the same port; the kernel spreads connections. */
  reusePort?: boolean
}

export function listen(gw: Gateway, options: ListenOptions) {
  const app = createApp(gw)
  app.listen({
    port: options.port,
    hostname: options.hostname,
    // Our own limit answers with a JSON 413; Bun's hard cap only guards against a runaway upload.
    maxRequestBodySize: options.maxBodyBytes * 2 + 1024 * 1024,
    // Short by default (slowloris guard); LLM routes lift it per request after authentication.
    idleTimeout: options.idleTimeoutSec,
    reusePort: options.reusePort ?? false,
  })
  return app.server!
}
