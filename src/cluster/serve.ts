import type { GatewayConfig } from '../config/config.ts'
import { createGateway, type Gateway } from '../core/gateway.ts'
import { endUpstreamCalls } from '../core/upstream.ts'
import { listen } from '../http/server.ts'
import type { Logger } from '../plugin-sdk/types.ts'
import { createLogger } from '../services/logger.ts'
import { printBanner } from './banner.ts'
import { WorkerChannel } from './worker-channel.ts'

/** `--workers 1`: the whole gateway in this process. */
export async function serveAlone(config: GatewayConfig) {
  const stop = new StopRequests()
  const log = createLogger()
  const gateway = await createGateway(config, log)
  const server = listen(gateway, config)
  printBanner(config, server.port!, { plugins: gateway.host.plugins.length, generatedMasterKey: gateway.generatedMasterKey, generatedKeys: gateway.generatedKeys })
  stop.serving((reason) => drainAndExit(gateway, server, config.drainMs, reason, log))
}

/**
 * A worker serves traffic on the port the primary chose, shared with its siblings (SO_REUSEPORT). The first
 * worker (the leader) migrates the store, applies the config file and creates the master key; the others
 * start after it, so nothing races.
 */
export async function serveAsWorker(config: GatewayConfig) {
  const stop = new StopRequests({ worker: true })
  const log = createLogger()
  const channel = new WorkerChannel()
  const leader = process.env.CONDUIT_WORKER_LEADER === '1'
  const gateway = await createGateway(config, log, { bus: channel, skipSeed: !leader, gatherMetrics: () => channel.gatherMetrics(), adminFailures: channel.adminFailures })
  channel.serveMetrics(gateway.metrics)
  const server = listen(gateway, { ...config, port: Number(process.env.CONDUIT_WORKER_PORT), reusePort: true })
  channel.send({
    type: 'listening',
    port: server.port!,
    plugins: gateway.host.plugins.length,
    generatedMasterKey: gateway.generatedMasterKey,
    generatedKeys: gateway.generatedKeys,
  })
  stop.serving((reason) => drainAndExit(gateway, server, config.drainMs, reason, log))
}

/**
 * What ends this process, once: SIGTERM, SIGINT or SIGHUP, and for a worker the loss of its primary (the IPC channel
 * closes however the primary ended, SIGKILL included; a worker without one would serve on unsupervised).
 * Set up before the gateway starts, so that a stop during start-up is not missed: with nothing to drain yet,
 * the process exits at once.
 */
class StopRequests {
  private drain: ((reason: string) => Promise<void>) | null = null
  private stopping = false

  constructor({ worker = false } = {}) {
    // SIGHUP too (the terminal that started it closed): left to its default, it ended the process at once, streams cut.
    for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => this.stop(signal))
    if (worker) {
      process.on('disconnect', () => this.stop('primary gone'))
      // Bun drops a 'disconnect' that came before the listener, but then reports the channel closed.
      if (!process.connected) this.stop('primary gone')
    }
  }

  serving(drain: (reason: string) => Promise<void>) {
    this.drain = drain
  }

  private stop(reason: string) {
    if (this.stopping) return
    this.stopping = true
    if (this.drain) void this.drain(reason)
    else process.exit(0)
  }
}

/**
 * Graceful stop: readiness fails at once, the listener closes (new connections are refused), in-flight
 * requests and streams get up to `drainMs` to finish, then whatever remains is closed.
 */
/** After the drain deadline, how long the requests we end get to deliver their error before connections close. */
const FAREWELL_MS = 100

async function drainAndExit(gateway: Gateway, server: ReturnType<typeof listen>, drainMs: number, reason: string, log: Logger) {
  log.info({ reason, inflight: gateway.metrics.inflight }, 'draining')
  gateway.draining = true
  const drained = await Promise.race([server.stop().then(() => true), Bun.sleep(drainMs).then(() => false)])
  if (!drained) {
    log.warn({ inflight: gateway.metrics.inflight }, 'drain timeout: ending the remaining requests')
    endUpstreamCalls()
    await Bun.sleep(FAREWELL_MS) // long enough for the error events to reach the clients
    await server.stop(true)
  }
  // The ledger's last flush gives up after 5 s; a database that accepts and never answers must not hold the exit past
  // that (closing its connections waited for it): the orchestrator would wait out its grace period and SIGKILL.
  const closed = await Promise.race([gateway.close().then(() => true), Bun.sleep(CLOSE_MS).then(() => false)])
  if (!closed) log.warn({ waitedMs: CLOSE_MS }, 'closing did not finish (the database does not answer); exiting without it')
  process.exit(0)
}

/** Longest the close after the drain may take: the ledger's last flush (5 s) and the rest. */
const CLOSE_MS = 8_000
