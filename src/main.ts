import { runPrimary } from './cluster/primary.ts'
import { WorkerChannel } from './cluster/worker-channel.ts'
import { loadConfig, type GatewayConfig } from './config/config.ts'
import { createGateway, type Gateway } from './core/gateway.ts'
import { listen } from './http/server.ts'
import { createLogger } from './services/logger.ts'

/*
 * One process (`--workers 1`), or a primary that prepares the store and supervises N workers sharing the
 * port. The primary prints the banner; workers only serve.
 */
const log = createLogger()
try {
  const config = await loadConfig(process.argv.slice(2), process.env)
  if (WorkerChannel.available()) await runWorker(config)
  else if (config.workers > 1) await runCluster(config)
  else await runSingle(config)
} catch (error) {
  // A start-up failure (bad config, wrong key, port taken) is a message for the operator, not a stack.
  console.error(`conduit: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
}

async function runSingle(config: GatewayConfig) {
  const gateway = await createGateway(config, log)
  const server = listen(gateway, config)
  banner(config, gateway, server.port!)
  onTerminate((signal) => drainAndExit(gateway, server, config.drainMs, signal))
}

async function runWorker(config: GatewayConfig) {
  const channel = new WorkerChannel()
  const gateway = await createGateway(config, log, { bus: channel, skipSeed: true, gatherMetrics: () => channel.gatherMetrics() })
  channel.serveMetrics(gateway.metrics)
  // The primary chose the port (a free one when asked for 0); every worker binds that same one.
  const server = listen(gateway, { ...config, port: Number(process.env.CONDUIT_WORKER_PORT), reusePort: true })
  channel.send({ type: 'listening', port: server.port! })
  onTerminate((signal) => drainAndExit(gateway, server, config.drainMs, signal))
}

async function runCluster(config: GatewayConfig) {
  // The primary migrates, seeds and creates the master key once, so workers never race to do it.
  const prepared = await createGateway(config, log)
  await prepared.close()
  const port = config.port === 0 ? freePort(config.hostname) : config.port
  await runPrimary({ workers: config.workers, port, log, drainMs: config.drainMs })
  banner(config, prepared, port, config.workers)
}

function freePort(hostname: string): number {
  const probe = Bun.listen({ hostname, port: 0, socket: { data() {} } })
  const port = probe.port
  probe.stop(true)
  return port
}

function banner(config: GatewayConfig, gateway: Gateway, port: number, workers = 1) {
  const where = config.databaseURL ? 'PostgreSQL (DATABASE_URL)' : config.dataDir
  const lines = [`Conduit: ${gateway.host.plugins.length} plugins loaded, data in ${where}, ${workers} worker${workers > 1 ? 's' : ''}`]
  if (gateway.generatedMasterKey) {
    lines.push('', '  A master key was generated. It is shown only this once; only its hash is stored:', `    ${gateway.generatedMasterKey}`)
    lines.push('  Use it as "Authorization: Bearer <master key>" on /admin/v1, or set CONDUIT_MASTER_KEY.')
  }
  for (const { name, key } of gateway.generatedKeys) lines.push(`  Virtual key '${name}' created from the config (shown once): ${key}`)
  lines.push(`Conduit listening on http://${config.hostname === '0.0.0.0' ? 'localhost' : config.hostname}:${port}/v1`)
  // Printed, not logged: the logger redacts keys, and this is the one time the operator must see one.
  process.stdout.write(lines.join('\n') + '\n')
}

function onTerminate(handler: (signal: NodeJS.Signals) => Promise<void>) {
  let stopping = false
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) return
      stopping = true
      void handler(signal)
    })
  }
}

/**
 * Graceful stop: readiness fails at once, the listener closes (new connections are refused), in-flight
 * requests and streams get up to `drainMs` to finish, then whatever remains is closed.
 */
async function drainAndExit(gateway: Gateway, server: ReturnType<typeof listen>, drainMs: number, signal: NodeJS.Signals) {
  log.info({ signal, inflight: gateway.metrics.inflight }, 'draining')
  gateway.draining = true
  const drained = await Promise.race([server.stop().then(() => true), Bun.sleep(drainMs).then(() => false)])
  if (!drained) {
    log.warn({ inflight: gateway.metrics.inflight }, 'drain timeout: closing the remaining connections')
    await server.stop(true)
  }
  await gateway.close()
  process.exit(0)
}
