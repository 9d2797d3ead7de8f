import path from 'node:path'
import { Type as t, type Static } from '@sinclair/typebox'
import { Value, ValueErrorType } from '@sinclair/typebox/value'
import { ConfigKeyInput, ModelInput, ProviderInput, TimeoutsInput, mainError } from '../core/admin.ts'
import { expectation } from '../core/request-schemas.ts'
import { parseAllowList } from '../core/egress.ts'
import type { PluginSpec } from '../plugin-host/host.ts'
import type { Timeouts } from '../core/upstream.ts'
import { checkLaunch, numberSetting, readConfigFile, readLaunch, type LaunchConfig } from './launch.ts'

/** A misspelled field (`failuremode: closed`, `conect_ms`) is refused with its path, not silently left at its default. */
const strict = { additionalProperties: false }

/** The optional declarative file (`--config conduit.yaml` or CONDUIT_CONFIG). Every section is optional. */
const FileSchema = t.Object(
  {
    server: t.Optional(
      t.Object({
        port: t.Optional(t.Integer({ minimum: 0, maximum: 65535 })),
        host: t.Optional(t.String()),
        max_body_bytes: t.Optional(t.Integer({ minimum: 1024 })),
        idle_timeout_s: t.Optional(t.Integer({ minimum: 1, maximum: 255 })),
        workers: t.Optional(t.Integer({ minimum: 1, maximum: 256 })),
        drain_ms: t.Optional(t.Integer({ minimum: 0 })),
        body_timeout_ms: t.Optional(t.Integer({ minimum: 1 })),
        max_inflight: t.Optional(t.Integer({ minimum: 1 })),
        max_upstream_response_bytes: t.Optional(t.Integer({ minimum: 1024 })),
        /** PEM files: with both, every endpoint is served over TLS (https://, wss://). */
        tls: t.Optional(t.Object({ cert: t.String({ minLength: 1 }), key: t.String({ minLength: 1 }) }, strict)),
      }, strict),
    ),
    realtime: t.Optional(
      t.Object(
        {
          /** Bytes a session may have waiting for a slow client (or provider) before it is ended. */
          max_buffered_bytes: t.Optional(t.Integer({ minimum: 65_536 })),
          idle_timeout_s: t.Optional(t.Integer({ minimum: 1 })),
          max_session_s: t.Optional(t.Integer({ minimum: 1 })),
          /** How long an ephemeral secret may wait for its connection. */
          secret_ttl_s: t.Optional(t.Integer({ minimum: 10, maximum: 7200 })),
        },
        strict,
      ),
    ),
    ledger: t.Optional(t.Object({ max_queued: t.Optional(t.Integer({ minimum: 1 })) }, strict)),
    /** The Requests page's records: how many days they are kept (0: none are written), and whether request bodies are. */
    request_log: t.Optional(
      t.Object(
        { retention_days: t.Optional(t.Integer({ minimum: 0, maximum: 3650 })), record_bodies: t.Optional(t.Boolean()) },
        strict,
      ),
    ),
    /** Responses API objects kept for GET /v1/responses/{id} and `previous_response_id`: how many days. */
    responses: t.Optional(t.Object({ retention_days: t.Optional(t.Integer({ minimum: 1, maximum: 3650 })) }, strict)),
    cors: t.Optional(t.Object({ origins: t.Optional(t.Array(t.String())) }, strict)),
    audio: t.Optional(t.Object({ max_upload_bytes: t.Optional(t.Integer({ minimum: 1 })) }, strict)),
    timeouts: t.Optional(TimeoutsInput),
    plugins: t.Optional(
      t.Array(
        t.Object({
          use: t.String({ minLength: 1 }),
          config: t.Optional(t.Unknown()),
          failure_mode: t.Optional(t.Union([t.Literal('open'), t.Literal('closed')])),
          timeout_ms: t.Optional(t.Integer({ minimum: 1 })),
          priority: t.Optional(t.Integer()),
          enabled: t.Optional(t.Boolean()),
        }, strict),
      ),
    ),
    providers: t.Optional(t.Array(ProviderInput)),
    models: t.Optional(t.Array(ModelInput)),
    keys: t.Optional(t.Array(ConfigKeyInput)),
  },
  strict,
)
export type ConfigFile = Static<typeof FileSchema>

export interface GatewayConfig extends LaunchConfig {
  /** Shared state for limits across instances, and store-change fan-out. */
  redisURL?: string
  /** `redisURL` names nodes of a Redis Cluster (one or more, comma-separated). */
  redisCluster: boolean
  /** Longest a Redis command may take before limits fall back; keeps an outage from stalling requests. */
  redisTimeoutMs: number
  masterKey?: string
  encryptionKey?: string
  /** A keyring, `kid:key,kid:key` (the first seals): replaces encryptionKey so the key can be rotated. */
  encryptionKeys?: string
  maxBodyBytes: number
  /** Deadline for a request body once the key is known (408 past it). */
  bodyTimeoutMs: number
  /** Requests in flight per process past which new ones get 503 at once. */
  maxInflight: number
  /** Largest non-streaming upstream response the gateway reads (502 past it). */
  maxUpstreamBodyBytes: number
  /** Largest audio upload (413 past it); spooled to disk, never held whole in memory. */
  audioMaxUploadBytes?: number
  idleTimeoutSec: number
  timeouts: Timeouts
  /** Spend rows held while the database is unreachable; past it the oldest are dropped (logged). */
  ledgerMaxQueued?: number
  /** `/metrics` needs `Authorization: Bearer <token>` when set; open otherwise. */
  metricsToken?: string
  /** Request records for the Web UI: kept `retentionDays` (default 7; 0 writes none); bodies only when `recordBodies`. */
  requestLog?: { retentionDays: number; recordBodies: boolean }
  /** Stored responses (`/v1/responses` with `store`) are kept `retentionDays` (default 30). */
  responses?: { retentionDays: number }
  /** Browser origins allowed to call `/v1/*` (CORS); none by default. */
  corsOrigins?: string[]
  /** Certificate and key (PEM file paths): every endpoint is served over TLS. */
  tls?: { cert: string; key: string }
  /** Realtime sessions' limits (defaults in src/realtime/service.ts); a key's metadata may lower or raise the timeouts. */
  realtime?: { maxBufferedBytes?: number; idleTimeoutS?: number; maxSessionS?: number; secretTtlS?: number }
  plugins: PluginSpec[]
  /** Folder that relative plugin paths resolve against. */
  configDir: string
  /** Entities applied idempotently at start. */
  seed: Pick<ConfigFile, 'providers' | 'models' | 'keys'>
  /** Private hosts, addresses and CIDRs upstream URLs may reach (CONDUIT_EGRESS_ALLOW); public ones always may. */
  egressAllow: string[]
}

export async function parseConfigFile(file: string, env: Record<string, string | undefined>): Promise<ConfigFile> {
  return checkConfigFile(file, await readConfigFile(file, env))
}

function checkConfigFile(file: string, expanded: unknown): ConfigFile {
  if (!Value.Check(FileSchema, expanded)) {
    const error = mainError(Value.Errors(FileSchema, expanded))
    throw new Error(`Invalid config ${file} at '${error.path || '/'}': ${error.type === ValueErrorType.Union ? expectation(error) : error.message}`)
  }
  return expanded
}

/** `https://app.example.com[:port]` as a browser sends it in `Origin`; a path, `*` or a typo stops the start. */
function browserOrigin(value: string): string {
  const url = URL.parse(value.trim())
  if (!url || !/^https?:$/.test(url.protocol) || url.pathname !== '/' || url.search || url.hash || url.username) {
    throw new Error(`Invalid CORS origin '${value}': expected scheme://host[:port], e.g. https://app.example.com (no path, no '*').`)
  }
  return url.origin
}

/** Both or neither: a certificate without its key (or the reverse) stops the start. Paths resolve against the config file's folder. */
function tlsFiles(cert: string | undefined, key: string | undefined, configPath: string | undefined): GatewayConfig['tls'] {
  if (!cert && !key) return undefined
  if (!cert || !key) throw new Error('TLS needs both a certificate and a key (server.tls.cert and .key, or CONDUIT_TLS_CERT and CONDUIT_TLS_KEY).')
  const base = configPath ? path.dirname(path.resolve(configPath)) : process.cwd()
  return { cert: path.resolve(base, cert), key: path.resolve(base, key) }
}

/** CLI flags beat the environment, which beats the file, which beats the embedded defaults. */
export async function loadConfig(argv: string[], env: Record<string, string | undefined>): Promise<GatewayConfig> {
  const { launch, configPath, flag, file: raw } = await readLaunch(argv, env)
  const file = configPath ? checkConfigFile(path.resolve(configPath), raw) : ({} as ConfigFile)
  checkLaunch(launch, env)
  // Every number set by the environment is a size, a count or a time: none means anything at 0 or below.
  const number = (name: string) => {
    const n = numberSetting(env[name], name)
    if (n !== undefined && n <= 0) throw new Error(`${name} must be more than 0, not '${env[name]}'.`)
    return n
  }
  const config: GatewayConfig = {
    ...launch,
    redisURL: env.REDIS_URL || undefined,
    redisCluster: /^(1|true|yes)$/i.test(env.REDIS_CLUSTER ?? ''),
    redisTimeoutMs: number('CONDUIT_REDIS_TIMEOUT_MS') ?? 50,
    masterKey: env.CONDUIT_MASTER_KEY || undefined,
    encryptionKey: env.CONDUIT_ENCRYPTION_KEY || undefined,
    encryptionKeys: env.CONDUIT_ENCRYPTION_KEYS || undefined,
    maxBodyBytes: number('CONDUIT_MAX_BODY_BYTES') ?? file.server?.max_body_bytes ?? 10 * 1024 * 1024,
    bodyTimeoutMs: number('CONDUIT_BODY_TIMEOUT_MS') ?? file.server?.body_timeout_ms ?? 30_000,
    maxInflight: number('CONDUIT_MAX_INFLIGHT') ?? file.server?.max_inflight ?? 4096,
    maxUpstreamBodyBytes: file.server?.max_upstream_response_bytes ?? 128 * 1024 * 1024,
    audioMaxUploadBytes: number('CONDUIT_AUDIO_MAX_UPLOAD_BYTES') ?? file.audio?.max_upload_bytes ?? 100 * 1024 * 1024,
    idleTimeoutSec: file.server?.idle_timeout_s ?? 30,
    timeouts: {
      connectMs: file.timeouts?.connect_ms ?? 5_000,
      firstByteMs: file.timeouts?.first_byte_ms ?? 300_000,
      idleMs: file.timeouts?.idle_ms ?? 120_000,
    },
    ledgerMaxQueued: number('CONDUIT_LEDGER_MAX_QUEUED') ?? file.ledger?.max_queued,
    metricsToken: env.CONDUIT_METRICS_TOKEN || undefined,
    requestLog: { retentionDays: file.request_log?.retention_days ?? 7, recordBodies: file.request_log?.record_bodies ?? false },
    responses: { retentionDays: file.responses?.retention_days ?? 30 },
    corsOrigins: (env.CONDUIT_CORS_ORIGINS ? env.CONDUIT_CORS_ORIGINS.split(',') : (file.cors?.origins ?? [])).filter((o) => o.trim()).map(browserOrigin),
    plugins: (file.plugins ?? []).map((p) => ({
      use: p.use,
      config: p.config,
      failureMode: p.failure_mode,
      timeoutMs: p.timeout_ms,
      priority: p.priority,
      enabled: p.enabled,
    })),
    configDir: configPath ? path.dirname(path.resolve(configPath)) : process.cwd(),
    seed: { providers: file.providers, models: file.models, keys: file.keys },
    egressAllow: parseAllowList(env.CONDUIT_EGRESS_ALLOW),
    tls: tlsFiles(env.CONDUIT_TLS_CERT ?? file.server?.tls?.cert, env.CONDUIT_TLS_KEY ?? file.server?.tls?.key, configPath),
    realtime: {
      maxBufferedBytes: number('CONDUIT_REALTIME_MAX_BUFFERED_BYTES') ?? file.realtime?.max_buffered_bytes,
      idleTimeoutS: number('CONDUIT_REALTIME_IDLE_TIMEOUT_S') ?? file.realtime?.idle_timeout_s,
      maxSessionS: number('CONDUIT_REALTIME_MAX_SESSION_S') ?? file.realtime?.max_session_s,
      secretTtlS: file.realtime?.secret_ttl_s,
    },
  }
  const checks = [
    ['max body bytes', config.maxBodyBytes, 1],
    ['body timeout', config.bodyTimeoutMs, 1],
    ['max in-flight requests', config.maxInflight, 1],
  ] as const
  for (const [name, value, min] of checks) {
    if (!Number.isInteger(value) || value < min) throw new Error(`Invalid ${name}: ${value}`)
  }
  return config
}
