import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { randomBytes, randomInt } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { SecretBox } from '../../src/store/crypto.ts'
import { secretBox } from '../../src/store/secrets.ts'
import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'
import { createTestDatabase } from '../helpers/postgres.ts'

const OPENAI = 'https://api.openai.com/v1'
const HEX_KEY = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f'
const material = () => randomBytes(32).toString('base64')

/** Flips one random bit of a base64url part's bytes (not of its text: the last character's spare bits decode to nothing). */
function flipBit(part: string): string {
  const bytes = Buffer.from(part, 'base64url')
  const bit = randomInt(bytes.length * 8)
  bytes[bit >> 3]! ^= 1 << (bit & 7)
  return bytes.toString('base64url')
}
/** Flips one random bit of one character of a row id, keeping it ASCII. */
const flipIdBit = (id: string) => {
  const i = randomInt(id.length)
  return id.slice(0, i) + String.fromCharCode(id.charCodeAt(i) ^ (1 << randomInt(7))) + id.slice(i + 1)
}
const opens = (box: SecretBox, sealed: string, aad: string) => {
  try {
    box.decrypt(sealed, aad)
    return true
  } catch {
    return false
  }
}

/**
 * SE5 on both store engines, through the admin API: 1,000 provider credentials; one random bit flipped in the
 * ciphertext, the IV, the tag or the row id of each → every one fails to decrypt; no plaintext in the store's
 * files (SQLite) or in `pg_dump` (PostgreSQL). SQLite runs with the default key (derived from the master key,
 * `v1` rows), PostgreSQL with a keyring (`v2` rows), so both formats are covered.
 */
for (const engine of ['sqlite', 'postgres'] as const) {
  describe(`${engine}: 1,000 sealed credentials`, () => {
    let gw: TestGateway
    let database: Awaited<ReturnType<typeof createTestDatabase>> | null = null
    let box: SecretBox
    const credentials = new Map<string, string>()
    let rows: { id: string; name: string; sealed: string }[] = []

    beforeAll(async () => {
      const keys = engine === 'postgres' ? { databaseURL: (database = await createTestDatabase()).url, encryptionKeys: `k1:${material()}` } : {}
      gw = await startGateway(keys)
      box = secretBox({ ...keys, masterKey: MASTER_KEY, dataDir: gw.dataDir })
      for (let i = 0; i < 1000; i++) credentials.set(`cred-${randomBytes(8).toString('hex')}`, `sk-proj-${randomBytes(30).toString('base64url')}`)
      const entries = [...credentials]
      for (let i = 0; i < entries.length; i += 25) {
        const batch = entries.slice(i, i + 25)
        await Promise.all(batch.map(([name, apiKey]) => gw.admin('POST', '/providers', { name, type: 'openai', base_url: OPENAI, api_key: apiKey })))
      }
      rows = (await gw.gateway.store.sql`SELECT id, name, api_key_secret AS sealed FROM providers`).map((r: any) => ({ ...r }))
    }, 120_000)
    afterAll(async () => {
      await gw.close()
      await database?.drop()
    })

    test('every credential opens, sealed in the expected format', () => {
      expect(rows.length).toBe(1000)
      const format = engine === 'postgres' ? /^v2\.k1\.[\w-]{16}\.[\w-]+\.[\w-]{22}$/ : /^v1\.[\w-]{16}\.[\w-]+\.[\w-]{22}$/
      expect(rows.filter((r) => format.test(r.sealed)).length).toBe(1000)
      expect(rows.filter((r) => box.decrypt(r.sealed, `provider:${r.id}`) === credentials.get(r.name)).length).toBe(1000)
    })

    test('one bit flipped in the ciphertext, IV, tag or row id: 100% of 4,000 tampered values fail to decrypt', () => {
      const survived: string[] = []
      for (const { id, sealed } of rows) {
        const parts = sealed.split('.')
        const [iv, ct, tag] = [parts.length - 3, parts.length - 2, parts.length - 1]
        for (const [what, at] of [['iv', iv], ['ciphertext', ct], ['tag', tag]] as const) {
          const tampered = parts.with(at, flipBit(parts[at]!)).join('.')
          if (opens(box, tampered, `provider:${id}`)) survived.push(`${what} of ${id}: ${tampered}`)
        }
        const otherId = flipIdBit(id)
        if (opens(box, sealed, `provider:${otherId}`)) survived.push(`row id ${id} → ${otherId}`)
      }
      expect(survived).toEqual([])
    })

    test('no credential, whole or in part, in the stored bytes', async () => {
      let stored: Buffer
      if (engine === 'sqlite') {
        stored = Buffer.concat(readdirSync(gw.dataDir).map((f) => readFileSync(path.join(gw.dataDir, f))))
      } else {
        const dump = Bun.spawnSync(['pg_dump', '--data-only', '--dbname', database!.url], { stdout: 'pipe', stderr: 'pipe' })
        expect(dump.stderr.toString()).toBe('')
        stored = dump.stdout
      }
      // The scan sees the rows: every provider name is there, in the clear.
      expect([...credentials.keys()].filter((name) => stored.includes(name)).length).toBe(1000)
      // The last four characters are stored on purpose (for display); any 12 characters before them are not.
      const leaks = [...credentials.values()].filter((secret) => stored.includes(secret) || stored.includes(secret.slice(-16, -4)))
      expect(leaks).toEqual([])
    })
  })
}

describe('keyring', () => {
  const M1 = material()
  const M2 = material()

  test('the first key seals, naming its kid; every key of the ring opens', () => {
    const ring = SecretBox.fromKeyring(`k2:${M2}, k1:${M1}`)
    expect(ring.primaryKid).toBe('k2')
    const sealed = ring.encrypt('sk-one', 'provider:p1')
    expect(sealed).toStartWith('v2.k2.')
    expect(ring.decrypt(sealed, 'provider:p1')).toBe('sk-one')
    const old = SecretBox.fromKeyring(`k1:${M1}`).encrypt('sk-two', 'provider:p2')
    expect(ring.decrypt(old, 'provider:p2')).toBe('sk-two')
    expect(ring.isCurrent(sealed)).toBe(true)
    expect(ring.isCurrent(old)).toBe(false)
  })

  test('values sealed before the keyring (v1) still open, with the one key or with a ring holding it anywhere', () => {
    // Sealed by the SecretBox of commit 5cd1fb2 (one key, no kid).
    const golden = 'v1.-qaa3fn0Dp2Ty-X1.Lo9JpSmXdnTMjMOgg0IEqVGNLIOodqZS0FvngObfZrai.4oUudQ1RLuAVL-uKOgJ6eg'
    const check = 'v1.Mgbx6tTbbkIqZxgp.SsC4eNv_2g.-dYGsOajRXF-H-banfRM1A'
    expect(SecretBox.fromKeyMaterial(HEX_KEY).decrypt(golden, 'provider:prov_golden')).toBe('sk-golden-provider-key-0123456789')
    expect(SecretBox.fromKeyring(`new:${M2},old:${HEX_KEY}`).decrypt(golden, 'provider:prov_golden')).toBe('sk-golden-provider-key-0123456789')
    // A master-key-derived key goes into the ring as the master key itself.
    expect(SecretBox.derive('golden-master-key-0123456789').decrypt(check, 'secrets_check')).toBe('conduit')
    expect(SecretBox.fromKeyring(`new:${M2},old:golden-master-key-0123456789`).decrypt(check, 'secrets_check')).toBe('conduit')
    // One unnamed key (CONDUIT_ENCRYPTION_KEY) keeps writing v1, so nothing changes for it.
    expect(SecretBox.fromKeyMaterial(HEX_KEY).encrypt('x', 'a')).toMatch(/^v1\./)
    // Without the old key it does not open.
    expect(() => SecretBox.fromKeyring(`new:${M2}`).decrypt(golden, 'provider:prov_golden')).toThrow()
  })

  test('a v1 value that no key of the ring opens, a kid not in the ring, a relabelled kid, a short tag, a moved value: all refused', () => {
    const ring = SecretBox.fromKeyring(`k2:${M2},k1:${M1}`)
    expect(() => ring.decrypt(SecretBox.fromKeyMaterial(HEX_KEY).encrypt('x', 'a'), 'a')).toThrow()
    const onK0 = SecretBox.fromKeyring(`k0:${material()}`).encrypt('x', 'a')
    expect(() => ring.decrypt(onK0, 'a')).toThrow("This secret was sealed with key 'k0', which is not in the keyring.")
    const sealed = SecretBox.fromKeyring(`k1:${M1}`).encrypt('x', 'a')
    expect(() => ring.decrypt(sealed.replace('v2.k1.', 'v2.k2.'), 'a')).toThrow()
    const parts = sealed.split('.')
    expect(() => ring.decrypt(parts.with(4, parts[4]!.slice(0, 6)).join('.'), 'a')).toThrow()
    expect(() => ring.decrypt(sealed, 'b')).toThrow()
    for (const garbage of ['', 'v1', 'v2.k1.a.b', 'v3.a.b.c', 'v1.a.b.c.d']) expect(() => ring.decrypt(garbage, 'a')).toThrow()
  })

  test('a malformed CONDUIT_ENCRYPTION_KEYS stops the start without echoing key material', () => {
    const secret = material()
    for (const spec of [secret, `:${secret}`, `k 1:${secret}`, `k.1:${secret}`, `k1:`, `k1:${secret},`, `k1:${secret},k1:${material()}`]) {
      let message = ''
      try {
        SecretBox.fromKeyring(spec)
      } catch (error) {
        message = (error as Error).message
      }
      expect(message).toContain('CONDUIT_ENCRYPTION_KEYS')
      expect(message).not.toContain(secret)
    }
    expect(() => secretBox({ encryptionKeys: `k1:${M1}`, encryptionKey: M1, dataDir: '/nonexistent' })).toThrow('not both')
  })
})
