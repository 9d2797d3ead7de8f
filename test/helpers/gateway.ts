import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { GatewayConfig } from '../../src/config/config.ts'
import { parseAllowList } from '../../src/core/egress.ts'
import { createGateway, type Gateway } from '../../src/core/gateway.ts'
import { listen } from '../../src/http/server.ts'
import { createLogger } from '../../src/services/logger.ts'

export const MASTER_KEY = 'test-master-key-0123456789'

export interface TestGateway {
  gateway: Gateway
  /** e.g. http://127.0.0.1:1234 */
  origin: string
  /** origin + /v1, for OpenAI SDK clients */
  baseURL: string
  dataDir: string
  /** Calls the admin API with the master key; returns the parsed JSON (throws on non-2xx unless `allowError`). */
  admin<T = any>(method: string, path: string, body?: unknown): Promise<T>
  adminRaw(method: string, path: string, body?: unknown, token?: string): Promise<Response>
  close(): Promise<void>
}

/** A real gateway (store, plugins, Elysia, Bun.serve) on a free port with its own temporary data folder. */
export async function startGateway(overrides: Partial<GatewayConfig> = {}, logs?: { level: string; lines: string[] }): Promise<TestGateway> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-test-'))
  const config: GatewayConfig = {
    port: 0,
    hostname: '127.0.0.1',
    dataDir,
    masterKey: MASTER_KEY,
    maxBodyBytes: 1024 * 1024,
    bodyTimeoutMs: 30_000,
    maxInflight: 4096,
    maxUpstreamBodyBytes: 128 * 1024 * 1024,
    idleTimeoutSec: 30,
    workers: 1,
    drainMs: 5_000,
    redisTimeoutMs: 50,
    redisCluster: false,
    timeouts: { connectMs: 5_000, firstByteMs: 30_000, idleMs: 30_000 },
    plugins: [],
    configDir: process.cwd(),
    seed: {},
    // The fakes listen on 127.0.0.1; the preload allows loopback for the suite (egress tests pass their own list).
    egressAllow: parseAllowList(process.env.CONDUIT_EGRESS_ALLOW),
    ...overrides,
  }
  const log = logs
    ? createLogger(logs.level, { write: (line: string) => void logs.lines.push(line) })
    : createLogger(process.env.CONDUIT_LOG_LEVEL ?? 'silent')
  const gateway = await createGateway(config, log)
  const server = listen(gateway, config)
  const origin = `http://127.0.0.1:${server.port}`
  const adminRaw = (method: string, p: string, body?: unknown, token = MASTER_KEY) =>
    fetch(`${origin}/admin/v1${p}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  return {
    gateway,
    origin,
    baseURL: `${origin}/v1`,
    dataDir,
    adminRaw,
    async admin(method, p, body) {
      const res = await adminRaw(method, p, body)
      const json = await res.json()
      if (!res.ok) throw new Error(`admin ${method} ${p} → ${res.status}: ${JSON.stringify(json)}`)
      return json as any
    },
    async close() {
      await server.stop(true)
      await gateway.close()
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
}
