import { ownCommand, sessionFlag, startEnv } from './cluster/own-command.ts'
import { checkLaunch, readLaunch } from './config/launch.ts'

if (process.argv[2] === '--help' || process.argv[2] === '-h') {
  console.log(`Usage: conduit [--port <n>] [--host <address>] [--data-dir <dir>] [--workers <n>] [--config <file>]
       conduit rotate-secrets [--limit <n>] [--data-dir <dir>] [--config <file>]
         re-seal every stored secret with the first key of CONDUIT_ENCRYPTION_KEYS

Every flag has an environment variable (PORT, HOST, CONDUIT_DATA_DIR, CONDUIT_WORKERS, CONDUIT_CONFIG); the README
lists them and the config file's fields.`)
  process.exit(0)
}
if (process.argv[2] === '--version') {
  console.log(`conduit ${(await import('../package.json')).version} (Bun ${Bun.version})`)
  process.exit(0)
}

// A maintenance command, not a server: it runs and exits (see src/commands/rotate-secrets.ts).
if (process.argv[2] === 'rotate-secrets') {
  process.exit(await (await import('./commands/rotate-secrets.ts')).rotateSecretsCommand(process.argv.slice(3), process.env))
}

/*
 * `--workers 1` serves in this process. More workers: a small primary supervises them on one port; the same
 * program, started by the primary with CONDUIT_WORKER=1, is a worker. Each role imports only what it needs.
 */
try {
  const argv = process.argv.slice(2)
  const worker = process.env.CONDUIT_WORKER === '1'
  const { launch } = await readLaunch(argv, process.env)
  // Settings Bun reads only as a process starts (see startEnv): the program replaces itself (execve: same pid,
  // nothing left behind) with them set, unless a profiler's or debugger's session would not survive that (see
  // sessionFlag). A primary's workers get them either way, from the primary.
  const missing = startEnv(process.env, launch.workers)
  const names = Object.keys(missing)
  const session = sessionFlag()
  if (names.length > 0 && session) {
    console.error(`conduit: not restarted under ${session}, so ${names.join(' and ')} stay unset in this process; set them to run it as it serves`)
  } else if (names.length > 0 && typeof process.execve === 'function') {
    const [file, ...args] = ownCommand()
    process.execve(file!, [file!, ...args], { ...process.env, ...missing })
  }
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
