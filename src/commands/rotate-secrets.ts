import { existsSync } from 'node:fs'
import path from 'node:path'
import { loadConfig } from '../config/config.ts'
import { rotateSecrets, secretBox } from '../store/secrets.ts'
import { Store } from '../store/store.ts'

const USAGE = 'Usage: conduit rotate-secrets [--limit N] [--data-dir DIR] [--config FILE]'

/**
 * `conduit rotate-secrets`: re-seals every stored secret with the first key of CONDUIT_ENCRYPTION_KEYS, one
 * row at a time, printing each; safe to interrupt and run again. `--limit N` stops after N rows.
 * Exit status 0 only when every stored secret is on the primary key, so a script can rerun until it is.
 */
export async function rotateSecretsCommand(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  try {
    const { limit, rest } = splitLimit(argv)
    const config = await loadConfig(rest, env)
    if (!config.encryptionKeys) {
      throw new Error('CONDUIT_ENCRYPTION_KEYS is not set: secrets are re-sealed with its first key, e.g. "k2:<new key>,k1:<current key>".')
    }
    // A mistyped folder must not become a new, empty store that reports "nothing left on old keys".
    const file = path.join(config.dataDir, 'conduit.sqlite')
    if (!config.databaseURL && !existsSync(file)) throw new Error(`No store at ${file}: pass the gateway's --data-dir or DATABASE_URL.`)
    const box = secretBox(config)
    const store = await Store.open(config)
    try {
      const report = await rotateSecrets(store, box, {
        limit,
        onPlan: (todo, total) => console.log(`Re-sealing ${todo} of ${total} stored secrets with key '${box.primaryKid}'.`),
        onResealed: (name, done, of) => console.log(`resealed ${name} with key '${box.primaryKid}' (${done}/${of})`),
      })
      const onPrimary = report.total - report.remaining
      console.log(`${report.resealed} resealed; ${onPrimary} of ${report.total} stored secrets are on key '${box.primaryKid}'.`)
      if (report.remaining === 0) {
        console.log(`Keys other than '${box.primaryKid}' can now be removed from CONDUIT_ENCRYPTION_KEYS.`)
        return 0
      }
      console.log(`${report.remaining} still on other keys: run rotate-secrets again.`)
      return 2
    } finally {
      await store.close()
    }
  } catch (error) {
    console.error(`conduit rotate-secrets: ${error instanceof Error ? error.message : String(error)}`)
    return 1
  }
}

/** `--limit`, and the rest: the gateway's own flags, which loadConfig takes (it refuses any other). */
function splitLimit(argv: string[]): { limit: number | undefined; rest: string[] } {
  const i = argv.findIndex((a) => a === '--limit' || a.startsWith('--limit='))
  if (i === -1) return { limit: undefined, rest: argv }
  const joined = argv[i]!.includes('=')
  const limit = Number(joined ? argv[i]!.slice('--limit='.length) : argv[i + 1])
  if (!Number.isInteger(limit) || limit < 1) throw new Error(`--limit takes a positive whole number of rows. ${USAGE}`)
  return { limit, rest: argv.filter((_, j) => j !== i && !(j === i + 1 && !joined)) }
}
