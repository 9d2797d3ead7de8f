import { ownCommand } from './cluster/own-command.ts'
import { checkLaunch, readLaunch } from './config/launch.ts'

// A maintenance command, not a server: it runs and exits (see src/commands/rotate-secrets.ts).
if (process.argv[2] === 'rotate-secrets') {
  process.exit(await (await import('./commands/rotate-secrets.ts')).rotateSecretsCommand(process.argv.slice(3), process.env))
}

/*
 * Bun's fetch allows 256 requests in flight per process unless BUN_CONFIG_MAX_HTTP_REQUESTS is set before the
 * process starts, and a gateway holds one per open stream: request 257 would wait for a whole stream to end.
 * So the program replaces itself (execve: same pid, nothing left behind) with the limit set.
 */
if (!process.env.BUN_CONFIG_MAX_HTTP_REQUESTS && typeof process.execve === 'function') {
  const [file, ...args] = ownCommand()
  process.execve(file!, [file!, ...args], { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: '65535' })
}

/*
 * `--workers 1` serves in this process. More workers: a small primary supervises them on one port; the same
 * program, started by the primary with CONDUIT_WORKER=1, is a worker. Each role imports only what it needs.
 */
try {
  const argv = process.argv.slice(2)
  const worker = process.env.CONDUIT_WORKER === '1'
  const { launch } = await readLaunch(argv, process.env)
  if (!worker && launch.workers > 1) {
    // The primary uses only the launch settings; its workers load, validate and serve the full configuration.
    checkLaunch(launch, process.env)
    await (await import('./cluster/primary.ts')).runPrimary(launch)
  } else {
    const config = await (await import('./config/config.ts')).loadConfig(argv, process.env)
    const serve = await import('./cluster/serve.ts')
    await (worker ? serve.serveAsWorker(config) : serve.serveAlone(config))
  }
} catch (error) {
  // A start-up failure (bad config, wrong key, port taken) is a message for the operator, not a stack.
  console.error(`conduit: ${error instanceof Error ? error.message : String(error)}`)
  process.exit(1)
}
