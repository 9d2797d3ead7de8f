import type { LaunchConfig } from '../config/launch.ts'
import { writeStdout } from '../services/stdout.ts'

export interface BannerFacts {
  plugins: number
  generatedMasterKey: string | null
  generatedKeys: { name: string; key: string }[]
}

/** What an operator sees at start. The last line is always the "listening" one. */
export function printBanner(config: LaunchConfig, port: number, facts: BannerFacts) {
  const where = config.databaseURL ? 'PostgreSQL (DATABASE_URL)' : config.dataDir
  const workers = `${config.workers} worker${config.workers > 1 ? 's' : ''}`
  const lines = [`Conduit: ${facts.plugins} plugins loaded, data in ${where}, ${workers}`]
  if (facts.generatedMasterKey) {
    lines.push('', '  A master key was generated. It is shown only this once; only its hash is stored:', `    ${facts.generatedMasterKey}`)
    lines.push('  Use it as "Authorization: Bearer <master key>" on /admin/v1, or set CONDUIT_MASTER_KEY.')
  }
  for (const { name, key } of facts.generatedKeys) lines.push(`  Virtual key '${name}' created from the config (shown once): ${key}`)
  lines.push(`Conduit listening on http://${config.hostname === '0.0.0.0' ? 'localhost' : config.hostname}:${port}/v1`)
  // Printed, not logged: the logger redacts keys, and this is the one time the operator must see one.
  writeStdout(lines.join('\n') + '\n')
}
