import { writeStdout } from './stdout.ts'

/**
 * JSON log lines in the shape the gateway's pino logger writes (`level`, `time`, `service`, `msg`), for the
 * primary of `--workers N`, which logs a handful of lines and should not load pino to do it.
 */
export function logLine(level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string) {
  writeStdout(JSON.stringify({ level, time: Date.now(), service: 'conduit', ...fields, msg }) + '\n')
}
