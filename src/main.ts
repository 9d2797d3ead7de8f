import { loadConfig } from './config/config.ts'

/*
 * `conduit` starts a small primary that supervises N worker processes sharing one port; the same program,
 * started by the primary with CONDUIT_WORKER=1, is a worker. Each role imports only what it needs, so the
 * primary stays light.
 */
try {
  const config = await loadConfig(process.argv.slice(2), process.env)
  if (process.env.CONDUIT_WORKER === '1') await (await import('./cluster/worker.ts')).runWorker(config)
  else await (await import('./cluster/primary.ts')).runPrimary(config)
} catch (error) {
  // A start-up failure (bad config, wrong key, port taken) is a message for the operator, not a stack.
  console.error(`conduit: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
}
