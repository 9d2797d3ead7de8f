import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'

export const sha256 = (value: string) => createHash('sha256').update(value).digest('hex')

/** Compares secrets by digest so lengths never leak or throw. */
export const secretEquals = (a: string, b: string) =>
  timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'

export function base62(bytes: Uint8Array): string {
  let n = BigInt('0x' + Buffer.from(bytes).toString('hex'))
  let out = ''
  while (n > 0n) {
    out = BASE62[Number(n % 62n)] + out
    n /= 62n
  }
  return out
}

/** CRC32 (IEEE), used as the checksum in virtual keys so typos are refused without touching the store. */
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})
/** Keys are ASCII, so char codes are the bytes. */
function crc32(text: string): number {
  let crc = 0xffffffff
  for (let i = 0; i < text.length; i++) crc = CRC_TABLE[(crc ^ text.charCodeAt(i)) & 0xff]! ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}
const checksum = (body: string) => crc32(body).toString(36).padStart(7, '0')

export const KEY_PREFIX = 'condt_'
const KEY_PATTERN = /^condt_[0-9A-Za-z]{40,48}[0-9a-z]{7}$/

/** `condt_` + 32 random bytes in base62 + a 7-character CRC32 checksum. */
export function generateVirtualKey(): string {
  const body = KEY_PREFIX + base62(randomBytes(32)).padStart(43, '0')
  return body + checksum(body)
}

export function isWellFormedKey(key: string): boolean {
  if (!KEY_PATTERN.test(key)) return false
  const body = key.slice(0, -7)
  return checksum(body) === key.slice(-7)
}

export const displayPrefix = (key: string) => key.slice(0, 10)
export const lastFour = (secret: string) => secret.slice(-4)

/** Key material: 64 hex characters or base64 of 32 bytes is the key itself; anything else (a passphrase) is stretched with HKDF. */
function keyFromMaterial(material: string): Buffer {
  const raw = /^[0-9a-f]{64}$/i.test(material) ? Buffer.from(material, 'hex') : Buffer.from(material, 'base64')
  return raw.length === 32 ? raw : deriveKey(material)
}
const deriveKey = (secret: string) => Buffer.from(hkdfSync('sha256', secret, 'conduit', 'provider-secrets-v1', 32))

/** A key of the ring. `kid` is null for the unnamed key of a one-key setup, which seals in the `v1` format. */
interface RingKey {
  kid: string | null
  key: Buffer
}

/** Key ids go into the sealed text between dots and into the env var between `,` and `:`. */
const KID_PATTERN = /^[A-Za-z0-9_-]{1,32}$/
const TAG_BYTES = 16

/**
 * AES-256-GCM for provider secrets, with a keyring so the key can be rotated. The first key of the ring seals;
 * every key opens. Two stored formats (base64url parts):
 * - `v2.<kid>.<iv>.<ciphertext>.<tag>`: sealed with the named key `kid` (CONDUIT_ENCRYPTION_KEYS);
 * - `v1.<iv>.<ciphertext>.<tag>`: sealed with an unnamed key (one-key setups, and every row from before the ring).
 *   It names no key, so each key of the ring is tried: a wrong key fails the tag, it never yields wrong text.
 * The row id (and the kid) is bound as additional data, so a ciphertext copied onto another row fails to decrypt.
 */
export class SecretBox {
  private constructor(private readonly ring: RingKey[]) {}

  /** One unnamed key: CONDUIT_ENCRYPTION_KEY, or the contents of `encryption.key`. */
  static fromKeyMaterial(material: string): SecretBox {
    return new SecretBox([{ kid: null, key: keyFromMaterial(material) }])
  }

  /** One unnamed key stretched from a secret (the master key). */
  static derive(secret: string): SecretBox {
    return new SecretBox([{ kid: null, key: deriveKey(secret) }])
  }

  static random(): { box: SecretBox; material: string } {
    const key = randomBytes(32)
    return { box: new SecretBox([{ kid: null, key }]), material: key.toString('base64') }
  }

  /**
   * `"k2:<material>,k1:<material>"` (CONDUIT_ENCRYPTION_KEYS): the first key is the primary. Errors name the
   * entry by position, never by content: the material is a secret.
   */
  static fromKeyring(spec: string): SecretBox {
    const entries = spec.split(',').map((entry) => entry.trim())
    const ring = entries.map((entry, i): RingKey => {
      const colon = entry.indexOf(':')
      const kid = entry.slice(0, colon)
      const material = entry.slice(colon + 1).trim()
      if (colon < 0 || !KID_PATTERN.test(kid) || !material) {
        throw new Error(
          `CONDUIT_ENCRYPTION_KEYS entry ${i + 1} is not '<kid>:<key>' (kid: 1–32 letters, digits, '-' or '_'); ` +
            `expected e.g. "k2:<new key>,k1:<old key>".`,
        )
      }
      return { kid, key: keyFromMaterial(material) }
    })
    const kids = ring.map((k) => k.kid)
    const repeated = kids.find((kid, i) => kids.indexOf(kid) !== i)
    if (repeated) throw new Error(`CONDUIT_ENCRYPTION_KEYS names key '${repeated}' twice.`)
    return new SecretBox(ring)
  }

  /** The kid new secrets are sealed with; null when it is an unnamed key (`v1`). */
  get primaryKid(): string | null {
    return this.ring[0]!.kid
  }

  has(kid: string): boolean {
    return this.ring.some((k) => k.kid === kid)
  }

  /** The key a sealed value names: its kid, or null for `v1` (unnamed). */
  static kidOf(sealed: string): string | null {
    return sealed.startsWith('v2.') ? sealed.split('.')[1]! : null
  }

  /** Sealed with the primary key already: a rotation leaves it alone. */
  isCurrent(sealed: string): boolean {
    return SecretBox.kidOf(sealed) === this.primaryKid
  }

  encrypt(plaintext: string, aad: string): string {
    const { kid, key } = this.ring[0]!
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES })
    cipher.setAAD(additionalData(aad, kid))
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    const parts = [iv, ct, cipher.getAuthTag()].map((b) => b.toString('base64url'))
    return (kid === null ? ['v1', ...parts] : ['v2', kid, ...parts]).join('.')
  }

  decrypt(sealed: string, aad: string): string {
    const parts = sealed.split('.')
    const [version] = parts
    if (version === 'v2' && parts.length === 5) {
      const kid = parts[1]!
      const entry = this.ring.find((k) => k.kid === kid)
      if (!entry) throw new Error(`This secret was sealed with key '${kid}', which is not in the keyring.`)
      return open(entry.key, parts.slice(2), additionalData(aad, kid))
    }
    if (version !== 'v1' || parts.length !== 4) throw new Error('Unknown secret format')
    let failure: unknown
    for (const { key } of this.ring) {
      try {
        return open(key, parts.slice(1), additionalData(aad, null))
      } catch (error) {
        failure = error
      }
    }
    throw failure
  }
}

/** `v2` binds the kid as well as the row: a value relabelled with another kid does not open. */
const additionalData = (aad: string, kid: string | null) => Buffer.from(kid === null ? aad : `${kid}:${aad}`)

function open(key: Buffer, [iv, ct, tag]: string[], aad: Buffer): string {
  if (!iv || ct === undefined || !tag) throw new Error('Unknown secret format')
  // A fixed tag length: GCM would otherwise accept a truncated tag, which is easier to forge.
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES })
  decipher.setAAD(aad)
  decipher.setAuthTag(Buffer.from(tag, 'base64url'))
  return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8')
}
