import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MASTER_KEY } from './gateway.ts'
import { startProcess, stopProcess, type RunningGateway } from './process.ts'

export interface Instance extends RunningGateway {
  baseURL: string
  /** Calls the admin API with the master key; throws on non-2xx. */
  admin<T = any>(method: string, path: string, body?: unknown): Promise<T>
  stop(): Promise<number>
}

/**
 * `count` separate gateway processes (`bun src/main.ts`, one worker each) sharing one database and one Redis,
 * as a scaled-out deployment runs them. Each has its own data folder so nothing is shared through the disk.
 */
export async function startInstances(count: number, env: { DATABASE_URL: string; REDIS_URL: string } & Record<string, string>): Promise<Instance[]> {
  const instances: Instance[] = []
  for (let i = 0; i < count; i++) {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-instance-'))
    const running = await startProcess(
      {
        CONDUIT_MASTER_KEY: MASTER_KEY,
        CONDUIT_ENCRYPTION_KEY: 'shared-test-encryption-key',
        CONDUIT_DATA_DIR: dataDir,
        CONDUIT_WORKERS: '1',
        CONDUIT_DRAIN_MS: '1000',
        ...env,
      },
      [],
      ['bun', 'src/main.ts'],
    )
    instances.push({
      ...running,
      baseURL: `${running.origin}/v1`,
      async admin(method, p, body) {
        const res = await fetch(`${running.origin}/admin/v1${p}`, {
          method,
          headers: { authorization: `Bearer ${MASTER_KEY}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          body: body === undefined ? undefined : JSON.stringify(body),
        })
        const json = await res.json()
        if (!res.ok) throw new Error(`admin ${method} ${p} → ${res.status}: ${JSON.stringify(json)}`)
        return json as any
      },
      async stop() {
        const code = await stopProcess(running.proc)
        rmSync(dataDir, { recursive: true, force: true })
        return code
      },
    })
  }
  return instances
}
