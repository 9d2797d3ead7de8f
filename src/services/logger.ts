import pino from 'pino'
import type { Logger } from '../plugin-sdk/types.ts'

/** Paths are case-sensitive in pino; headers are logged lower-cased. */
const REDACT = [
  'headers.authorization',
  'headers["x-api-key"]',
  'headers["api-key"]',
  'headers["proxy-authorization"]',
  'headers.cookie',
  '*.api_key',
  '*.apiKey',
  '*.key',
  '*.master_key',
]

/** Last line of defence for secrets embedded in strings (an upstream error echoing a key, say). */
const SECRET_PATTERN = /\b(condt_[0-9A-Za-z]{8,}|sk-[A-Za-z0-9_-]{8,})/g
export const scrubSecrets = (text: string) => text.replace(SECRET_PATTERN, (s) => `${s.slice(0, 6)}…[REDACTED]`)

export function createLogger(level = process.env.CONDUIT_LOG_LEVEL ?? 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'conduit' },
      redact: { paths: REDACT, censor: '[REDACTED]' },
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) if (typeof args[i] === 'string') args[i] = scrubSecrets(args[i] as string)
          const first = args[0] as any
          if (first && typeof first === 'object' && first.err instanceof Error) {
            first.err = { type: first.err.name, message: scrubSecrets(first.err.message) }
          }
          method.apply(this, args as Parameters<typeof method>)
        },
      },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  ) as unknown as Logger
}
