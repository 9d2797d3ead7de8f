import path from 'node:path'
import { inContext } from '../plugin-sdk/errors.ts'

/**
 * What every role needs before the full configuration: where the config file is and its parsed text, and the
 * few settings the primary of `--workers N` uses to start its workers and print the banner. Read with no
 * schema library, no crypto and no logger, so that the primary stays small; the full configuration
 * (config.ts) is read and validated by the processes that serve, and a bad one stops the leader worker with
 * its message, which stops the primary.
 */
export interface LaunchConfig {
  port: number
  hostname: string
  dataDir: string
  databaseURL?: string
  /** Processes sharing the port; 1 runs the gateway in this process. */
  workers: number
  /** On SIGTERM, how long in-flight requests and streams may take to finish. */
  drainMs: number
}

export interface Launch {
  launch: LaunchConfig
  /** The config file's path, when there is one. */
  configPath: string | undefined
  /** The file with `${VAR}` expanded, not yet validated (config.ts checks it). */
  file: Record<string, any>
  /** `--name value` or `--name=value`. */
  flag(name: string): string | undefined
}

/** `${NAME}` → the environment variable; an unset variable is an error, not an empty secret. */
export function expandEnv(value: unknown, env: Record<string, string | undefined>, where = ''): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
      const found = env[name]
      if (found === undefined) throw new Error(`Config${where ? ` at ${where}` : ''} references \${${name}}, which is not set.`)
      return found
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnv(v, env, `${where}[${i}]`))
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expandEnv(v, env, where ? `${where}.${k}` : k)]))
  }
  return value
}

/** A config file (YAML, or JSON by its extension) with the environment expanded. */
export async function readConfigFile(file: string, env: Record<string, string | undefined>): Promise<Record<string, any>> {
  const handle = Bun.file(file)
  if (!(await handle.exists())) throw new Error(`Config file not found: ${file}`)
  const text = await handle.text()
  let raw: unknown
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : Bun.YAML.parse(text)
  } catch (error) {
    throw inContext(`Config file ${file} is not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}`, error)
  }
  return expandEnv(raw ?? {}, env) as Record<string, any>
}

/** A number from a flag or the environment; `name` says which when it is not one (`50ms` must not pass as NaN). */
export function numberSetting(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === '') return undefined
  const n = Number(value)
  if (!Number.isFinite(n)) throw new Error(`${name} must be a number, not '${value}'.`)
  return n
}

/** The flags a start takes, as `--name value` or `--name=value`. */
const FLAGS = ['config', 'port', 'host', 'data-dir', 'workers']

/** A misspelled flag would otherwise start a gateway on the defaults: another port, another data folder. */
function checkFlags(argv: string[]) {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const name = arg.startsWith('--') ? arg.slice(2).split('=')[0]! : null
    if (name === null || !FLAGS.includes(name)) {
      throw new Error(`Unknown argument '${arg}'. A start takes ${FLAGS.map((f) => `--${f}`).join(', ')} (or the environment; see the README).`)
    }
    if (!arg.includes('=') && (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--'))) throw new Error(`--${name} needs a value.`)
    if (!arg.includes('=')) i++
  }
}

/** CLI flags beat the environment, which beats the file, which beats the embedded defaults. */
export async function readLaunch(argv: string[], env: Record<string, string | undefined>): Promise<Launch> {
  checkFlags(argv)
  const flag = (name: string) => {
    const i = argv.indexOf(`--${name}`)
    if (i !== -1) return argv[i + 1]
    return argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
  }
  const configPath = flag('config') ?? env.CONDUIT_CONFIG
  const file = configPath ? await readConfigFile(path.resolve(configPath), env) : {}
  const server = file.server ?? {}
  const launch: LaunchConfig = {
    port: numberSetting(flag('port') ?? env.PORT, '--port (PORT)') ?? server.port ?? 5000,
    hostname: flag('host') ?? env.HOST ?? server.host ?? '0.0.0.0',
    dataDir: path.resolve(flag('data-dir') ?? env.CONDUIT_DATA_DIR ?? './data'),
    databaseURL: env.DATABASE_URL || undefined,
    workers: numberSetting(flag('workers') ?? env.CONDUIT_WORKERS, '--workers (CONDUIT_WORKERS)') ?? server.workers ?? navigator.hardwareConcurrency,
    drainMs: numberSetting(env.CONDUIT_DRAIN_MS, 'CONDUIT_DRAIN_MS') ?? server.drain_ms ?? 30_000,
  }
  return { launch, configPath, file, flag }
}

/** Shorter master keys can be guessed; the one Conduit generates is 52 characters. */
export const MIN_MASTER_KEY_LENGTH = 16

/** pino's levels, and `silent`. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

/** What must stop a start before any process is spawned, with one line for the operator. */
export function checkLaunch(launch: LaunchConfig, env: Record<string, string | undefined>) {
  for (const [name, value, min] of [['port', launch.port, 0], ['workers', launch.workers, 1], ['drain time', launch.drainMs, 0]] as const) {
    if (!Number.isInteger(value) || value < min) throw new Error(`Invalid ${name}: ${JSON.stringify(value)} (a whole number, at least ${min})`)
  }
  if (launch.port > 65_535) throw new Error(`Invalid port: ${launch.port} (at most 65535)`)
  const level = env.CONDUIT_LOG_LEVEL
  if (level && !LOG_LEVELS.includes(level)) throw new Error(`CONDUIT_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}; it is '${level}'.`)
  // Anything else would keep the store in a local SQLite file while the banner speaks of PostgreSQL.
  if (launch.databaseURL && !/^postgres(ql)?:\/\//i.test(launch.databaseURL)) {
    throw new Error(`DATABASE_URL must be a postgres:// or postgresql:// URL; it begins '${launch.databaseURL.split(':')[0]}:'.`)
  }
  // ioredis takes other schemes for a Unix socket path, and a database that is not a number for 0.
  for (const url of (env.REDIS_URL ?? '').split(',').map((u) => u.trim()).filter(Boolean)) {
    if (!/^rediss?:\/\//i.test(url)) throw new Error(`REDIS_URL must be redis:// or rediss:// URLs; it begins '${url.split(':')[0]}:'.`)
    const database = URL.parse(url)?.pathname.slice(1) ?? ''
    if (!/^\d*$/.test(database)) throw new Error(`The database in REDIS_URL must be a number (redis://host:6379/2), not '${database}'.`)
  }
  const masterKey = env.CONDUIT_MASTER_KEY
  if (masterKey && masterKey.length < MIN_MASTER_KEY_LENGTH) {
    throw new Error(`CONDUIT_MASTER_KEY is ${masterKey.length} characters long; use at least ${MIN_MASTER_KEY_LENGTH} (e.g. openssl rand -hex 24).`)
  }
}
