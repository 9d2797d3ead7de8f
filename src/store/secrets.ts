import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { GatewayConfig } from '../config/config.ts'
import type { Logger } from '../plugin-sdk/types.ts'
import { SecretBox } from './crypto.ts'
import type { Store } from './store.ts'

/** A setting sealed at the first start, so a wrong key is noticed even before any provider exists. */
const SECRETS_CHECK = 'secrets_check'

/**
 * The provider-secret keys: CONDUIT_ENCRYPTION_KEYS (a keyring, to rotate), else CONDUIT_ENCRYPTION_KEY, else
 * derived from CONDUIT_MASTER_KEY, else a random key kept in `<data>/encryption.key` (0600) — never beside the
 * secrets it protects in the database.
 */
export function secretBox(config: Pick<GatewayConfig, 'encryptionKeys' | 'encryptionKey' | 'masterKey' | 'databaseURL' | 'dataDir'>): SecretBox {
  if (config.encryptionKeys) {
    if (config.encryptionKey) {
      throw new Error('Set CONDUIT_ENCRYPTION_KEYS or CONDUIT_ENCRYPTION_KEY, not both: put the old key in the ring, e.g. "k2:<new>,k1:<old>".')
    }
    return SecretBox.fromKeyring(config.encryptionKeys)
  }
  if (config.encryptionKey) return SecretBox.fromKeyMaterial(config.encryptionKey)
  if (config.masterKey) return SecretBox.derive(config.masterKey)
  if (config.databaseURL) {
    throw new Error('With DATABASE_URL every instance must share the secret key: set CONDUIT_ENCRYPTION_KEY(S) or CONDUIT_MASTER_KEY.')
  }
  const file = path.join(config.dataDir, 'encryption.key')
  if (existsSync(file)) return SecretBox.fromKeyMaterial(readFileSync(file, 'utf8').trim())
  const { box, material } = SecretBox.random()
  writeFileSync(file, material + '\n', { mode: 0o600 })
  chmodSync(file, 0o600)
  return box
}

/** A value in the store sealed by a SecretBox, with the additional data it was sealed with. */
interface SealedValue {
  /** For messages, e.g. `provider prov_…`. */
  name: string
  sealed: string
  aad: string
  /** Writes `next` in its place unless the row changed meanwhile (then false). One statement: atomic. */
  replace(next: string): Promise<boolean>
}

/** What stands for a credential in a URL the API shows. */
const MASK = '***'

/** `https://user:secret@host/` → `https://user:***@host/`: a credential in a URL is a secret like any other. */
export function maskCredentials(url: string | null): string | null {
  if (url === null) return null
  const parsed = URL.parse(url)
  if (!parsed) return url.includes('@') ? MASK : url
  if (!parsed.username && !parsed.password) return url
  if (parsed.password) parsed.password = MASK
  else parsed.username = MASK
  return parsed.href
}

/** A URL whose credential is the mask, not a credential (compared with the public mask: nothing to time). */
export function isMasked(url: string): boolean {
  const parsed = URL.parse(url)
  return !!parsed && (parsed.password || parsed.username) === MASK
}

/** The additional data a provider's sealed base URL is bound to (its API key's is `provider:<id>`). */
export const baseURLAad = (id: string) => `provider-url:${id}`

/**
 * A base URL as the store keeps it: one with a credential in it (a server behind basic auth) is sealed whole, and
 * `base_url` holds it masked, for the API's view and the egress check (the host is the same).
 */
export function sealBaseURL(box: SecretBox, id: string, url: string | null): { baseURL: string | null; baseURLSecret: string | null } {
  const parsed = url === null ? null : URL.parse(url)
  if (!parsed?.username && !parsed?.password) return { baseURL: url, baseURLSecret: null }
  return { baseURL: maskCredentials(url), baseURLSecret: box.encrypt(url!, baseURLAad(id)) }
}

/** Base URLs with credentials stored in clear (before migration 17): sealed now, each only if still as read. */
export async function sealBaseURLs(store: Store, box: SecretBox) {
  const rows: { id: string; base_url: string }[] = await store.sql`
    SELECT id, base_url FROM providers WHERE base_url_secret IS NULL AND base_url LIKE ${'%@%'}`
  for (const row of rows) {
    const { baseURL, baseURLSecret } = sealBaseURL(box, row.id, row.base_url)
    if (baseURLSecret) await store.sql`UPDATE providers SET base_url = ${baseURL}, base_url_secret = ${baseURLSecret} WHERE id = ${row.id} AND base_url = ${row.base_url}`
  }
}

/** Everything the gateway seals: the key check, then each provider's API key(s) and base URL, in a stable order. */
async function sealedValues(store: Store): Promise<SealedValue[]> {
  const { sql } = store
  const check = await store.getSetting(SECRETS_CHECK)
  const providers: { id: string; api_key_secret: string }[] = await sql`
    SELECT id, api_key_secret FROM providers WHERE api_key_secret IS NOT NULL ORDER BY id`
  const urls: { id: string; base_url_secret: string }[] = await sql`
    SELECT id, base_url_secret FROM providers WHERE base_url_secret IS NOT NULL ORDER BY id`
  const checkValue: SealedValue[] = check
    ? [
        {
          name: 'the key check',
          sealed: check,
          aad: SECRETS_CHECK,
          replace: async (next) => (await sql`UPDATE settings SET value = ${next} WHERE name = ${SECRETS_CHECK} AND value = ${check}`).count === 1,
        },
      ]
    : []
  return [
    ...checkValue,
    ...providers.map(
      (row): SealedValue => ({
        name: `provider ${row.id}`,
        sealed: row.api_key_secret,
        // As AdminService seals provider keys and Catalog opens them.
        aad: `provider:${row.id}`,
        replace: async (next) =>
          (await sql`UPDATE providers SET api_key_secret = ${next} WHERE id = ${row.id} AND api_key_secret = ${row.api_key_secret}`).count === 1,
      }),
    ),
    ...urls.map(
      (row): SealedValue => ({
        name: `provider ${row.id} base URL`,
        sealed: row.base_url_secret,
        aad: baseURLAad(row.id),
        replace: async (next) =>
          (await sql`UPDATE providers SET base_url_secret = ${next} WHERE id = ${row.id} AND base_url_secret = ${row.base_url_secret}`).count === 1,
      }),
    ),
  ]
}

const opens = (box: SecretBox, value: SealedValue) => {
  try {
    box.decrypt(value.sealed, value.aad)
    return true
  } catch {
    return false
  }
}

const kidName = (kid: string | null) => (kid === null ? 'the unnamed key (v1)' : `'${kid}'`)

/** Refuses a keyring that cannot open every stored secret, saying which key is missing when a secret names it. */
function assertReadable(box: SecretBox, values: SealedValue[]) {
  const unreadable = values.filter((value) => !opens(box, value))
  if (unreadable.length === 0) return
  const missing = [...new Set(unreadable.map((v) => SecretBox.kidOf(v.sealed)))].filter((kid): kid is string => kid !== null && !box.has(kid))
  if (missing.length) {
    throw new Error(
      `${unreadable.length} stored secret(s) are sealed with key ${missing.map(kidName).join(', ')}, which CONDUIT_ENCRYPTION_KEYS does not have: ` +
        'add it back, run `conduit rotate-secrets`, and remove it only then.',
    )
  }
  throw new Error(
    `The encryption key does not match the one the stored provider secrets were sealed with (${unreadable.length} of ${values.length} do not open; ` +
      'check CONDUIT_ENCRYPTION_KEYS / CONDUIT_ENCRYPTION_KEY / CONDUIT_MASTER_KEY, or the data folder’s encryption.key).',
  )
}

/** A wrong or missing key must stop the start, not surface later as undecryptable providers. */
export async function checkSecretKey(store: Store, box: SecretBox, log: Logger) {
  if (!(await store.getSetting(SECRETS_CHECK))) await store.setSetting(SECRETS_CHECK, box.encrypt('conduit', SECRETS_CHECK))
  const values = await sealedValues(store)
  assertReadable(box, values)
  const older = values.filter((v) => !box.isCurrent(v.sealed))
  if (older.length) {
    const kids = [...new Set(older.map((v) => SecretBox.kidOf(v.sealed)))].map(kidName)
    log.warn({ secrets: older.length, keys: kids }, 'stored secrets are sealed with older keys; run `conduit rotate-secrets` before removing them')
  }
}

export interface RotationReport {
  /** Values this run re-sealed with the primary key. */
  resealed: number
  /** Values in the store afterwards, and how many of them are still on other keys. */
  total: number
  remaining: number
}

/**
 * Re-seals every stored secret with the primary key. Row by row, each an atomic compare-and-set, so a run
 * killed at any point leaves each row on its old key or on the new one (both in the ring, both open) and a
 * rerun carries on where it stopped. A row an admin changed meanwhile is left for the next run.
 */
export async function rotateSecrets(
  store: Store,
  box: SecretBox,
  options: {
    limit?: number
    /** Before the first write: how many values this run will re-seal, of how many stored. */
    onPlan?: (todo: number, total: number) => void
    onResealed?: (name: string, done: number, of: number) => void
  } = {},
): Promise<RotationReport> {
  const values = await sealedValues(store)
  assertReadable(box, values)
  const todo = values.filter((v) => !box.isCurrent(v.sealed)).slice(0, options.limit)
  options.onPlan?.(todo.length, values.length)
  let resealed = 0
  for (const value of todo) {
    if (await value.replace(box.encrypt(box.decrypt(value.sealed, value.aad), value.aad))) {
      options.onResealed?.(value.name, ++resealed, todo.length)
    }
  }
  const after = await sealedValues(store)
  return { resealed, total: after.length, remaining: after.filter((v) => !box.isCurrent(v.sealed)).length }
}
