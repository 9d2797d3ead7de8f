import path from 'node:path'

export const ROOT = path.resolve(import.meta.dir, '../..')
/** The fake upstreams' addresses, which the egress policy refuses unless allowed. */
export const LOOPBACK_ALLOW = '127.0.0.1,localhost,::1'

export interface RunningGateway {
  proc: ReturnType<typeof Bun.spawn>
  /** Everything printed up to the "listening" line. */
  output: string
  /** e.g. http://127.0.0.1:1234 */
  origin: string
}

/**
 * Starts Conduit as a user would (`bun run start`, or a compiled binary) and waits for the banner's last
 * line, "Conduit listening on …".
 */
export async function startProcess(
  env: Record<string, string>,
  args: string[] = [],
  command = ['bun', 'run', 'start'],
  cwd = ROOT,
): Promise<RunningGateway> {
  const proc = Bun.spawn([...command, ...args], {
    cwd,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', PORT: '0', HOST: '127.0.0.1', CONDUIT_LOG_LEVEL: 'warn', CONDUIT_EGRESS_ALLOW: LOOPBACK_ALLOW, ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const reader = proc.stdout.getReader()
  let output = ''
  const deadline = Date.now() + 15_000
  while (!/listening on \S+\/v1\n/.test(output) && Date.now() < deadline) {
    const read = await Promise.race([reader.read(), Bun.sleep(deadline - Date.now()).then(() => null)])
    if (!read || read.done) break
    output += new TextDecoder().decode(read.value)
  }
  reader.releaseLock()
  const origin = /listening on (http:\/\/\S+)\/v1/.exec(output)?.[1]?.replace('localhost', '127.0.0.1')
  if (!origin) throw new Error(`Conduit did not start:\n${output}\n${await new Response(proc.stderr).text()}`)
  return { proc, output, origin }
}

export async function stopProcess(proc: ReturnType<typeof Bun.spawn>, signal: NodeJS.Signals = 'SIGTERM') {
  proc.kill(signal)
  return await proc.exited
}
