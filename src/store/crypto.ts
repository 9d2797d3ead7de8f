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

/**
 * AES-256-GCM for provider secrets. Stored as `v1.<iv>.<ciphertext>.<tag>` (base64url); the row id is bound as
 * additional data so a ciphertext copied onto another row fails to decrypt.
 */
export class SecretBox {
  private constructor(private readonly key: Buffer) {}

  static fromKeyMaterial(material: string): SecretBox {
    const raw = /^[0-9a-f]{64}$/i.test(material) ? Buffer.from(material, 'hex') : Buffer.from(material, 'base64')
    if (raw.length === 32) return new SecretBox(raw)
    // Anything else (a passphrase, the master key) is stretched with HKDF.
    return SecretBox.derive(material)
  }

  static derive(secret: string): SecretBox {
    return new SecretBox(Buffer.from(hkdfSync('sha256', secret, 'conduit', 'provider-secrets-v1', 32)))
  }

  static random(): { box: SecretBox; material: string } {
    const key = randomBytes(32)
    return { box: new SecretBox(key), material: key.toString('base64') }
  }

  encrypt(plaintext: string, aad: string): string {
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.key, iv)
    cipher.setAAD(Buffer.from(aad))
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()])
    return ['v1', iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.')
  }

  decrypt(sealed: string, aad: string): string {
    const [version, iv, ct, tag] = sealed.split('.')
    if (version !== 'v1' || !iv || ct === undefined || !tag) throw new Error('Unknown secret format')
    const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64url'))
    decipher.setAAD(Buffer.from(aad))
    decipher.setAuthTag(Buffer.from(tag, 'base64url'))
    return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]).toString('utf8')
  }
}
