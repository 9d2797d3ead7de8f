import { afterAll, beforeAll, expect, test } from 'bun:test'
import fc from 'fast-check'
import { generateVirtualKey } from '../../src/store/crypto.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

/**
 * SE2: a virtual key carries a CRC32 checksum, so a mistyped, truncated or forged key is refused before any
 * store query. 10,000 mutations of valid keys go through HTTP to a real gateway whose Store counts its key
 * lookups (the real `findKeyByHash`, wrapped to count).
 */
let gw: TestGateway
let lookups = 0
let storedKeys: string[] = []

beforeAll(async () => {
  gw = await startGateway()
  storedKeys = await Promise.all(['a', 'b', 'c'].map(async (name) => (await gw.admin('POST', '/keys', { name: `se2-${name}` })).key as string))
  const store = gw.gateway.store
  const findKeyByHash = store.findKeyByHash.bind(store)
  store.findKeyByHash = (hash) => {
    lookups++
    return findKeyByHash(hash)
  }
})
afterAll(() => gw.close())

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
/** The checksum's alphabet. */
const BASE36 = '0123456789abcdefghijklmnopqrstuvwxyz'
/** Printable ASCII without spaces: what a header can carry and Bearer parsing keeps as is. */
const PRINTABLE = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).join('')
const charFrom = (alphabet: string) => fc.integer({ min: 0, max: alphabet.length - 1 }).map((i) => alphabet[i]!)

type Mutation = { kind: string; apply: (key: string) => string }
const m = (kind: string, apply: (key: string) => string): Mutation => ({ kind, apply })
/** `key` with its character at `n` (wrapped to the key's length, from the end when negative) replaced by `by(it)`. */
const replaceAt = (key: string, n: number, by: (c: string) => string) => {
  const i = ((n % key.length) + key.length) % key.length
  return key.slice(0, i) + by(key[i]!) + key.slice(i + 1)
}
const swapCase = (c: string) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())
const flip = (bit: number) => (c: string) => String.fromCharCode(c.charCodeAt(0) ^ (1 << bit))

/** Each kind of damage a key suffers in a copy-paste, a typo or a forgery; the last 7 characters are the checksum. */
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.nat(), charFrom(BASE62)).map(([n, c]) => m('replace (base62)', (k) => replaceAt(k, n, () => c))),
  fc.tuple(fc.nat(), charFrom(PRINTABLE)).map(([n, c]) => m('replace (any)', (k) => replaceAt(k, n, () => c))),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 6 })).map(([n, bit]) => m('bit flip', (k) => replaceAt(k, n, flip(bit)))),
  fc.tuple(fc.nat(), charFrom(BASE62)).map(([n, c]) => m('insert', (k) => replaceAt(k, n, (old) => c + old))),
  fc.nat().map((n) => m('delete', (k) => replaceAt(k, n, () => ''))),
  fc.nat().map((n) => m('truncate', (k) => k.slice(0, n % k.length))),
  fc.nat().map((n) => m('transpose', (k) => replaceAt(replaceAt(k, n, () => k[(n + 1) % k.length]!), n + 1, () => k[n % k.length]!))),
  fc.nat().map((n) => m('case of one', (k) => replaceAt(k, n, swapCase))),
  fc.boolean().map((upper) => m('case of all', (k) => (upper ? k.toUpperCase() : k.toLowerCase()))),
  fc.tuple(fc.integer({ min: 1, max: 7 }), charFrom(BASE36)).map(([back, c]) => m('checksum', (k) => replaceAt(k, -back, () => c))),
  charFrom(BASE62).map((c) => m('append', (k) => k + c)),
)

/** 1–3 mutations of a stored key or of a valid key the store does not hold; never the original itself. */
const mutatedKey = (originals: string[]) =>
  fc
    .tuple(fc.constantFrom(...originals), fc.array(mutation, { minLength: 1, maxLength: 3 }))
    .map(([original, mutations]) => ({
      original,
      kinds: mutations.map((mutation) => mutation.kind),
      key: mutations.reduce((key, mutation) => (key ? mutation.apply(key) : key), original),
    }))
    .filter(({ original, key }) => key !== original && /^[\x21-\x7e]+$/.test(key))

/** The three places a client may put its key. */
const HEADERS = [
  (key: string) => ({ authorization: `Bearer ${key}` }),
  (key: string) => ({ 'x-api-key': key }),
  (key: string) => ({ 'api-key': key }),
]

test('10,000 mutated keys: every one refused with 401 invalid_api_key, and not one store lookup', async () => {
  const listModels = (headers: Record<string, string>) => fetch(`${gw.baseURL}/models`, { headers })

  // The counter counts: a stored key and a well-formed unknown key each cost one lookup.
  lookups = 0
  expect((await listModels({ authorization: `Bearer ${storedKeys[0]}` })).status).toBe(200)
  expect((await listModels({ authorization: `Bearer ${generateVirtualKey()}` })).status).toBe(401)
  expect(lookups).toBe(2)

  const corpus = fc.sample(mutatedKey([...storedKeys, generateVirtualKey(), generateVirtualKey()]), { numRuns: 10_000, seed: 42 })
  expect(corpus.length).toBe(10_000)
  const kinds = new Map<string, number>()
  for (const { kinds: used } of corpus) for (const kind of used) kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
  for (const count of kinds.values()) expect(count).toBeGreaterThan(500)
  expect(kinds.size).toBe(11)

  lookups = 0
  const admitted: string[] = []
  let next = 0
  const worker = async () => {
    while (next < corpus.length) {
      const i = next++
      const { key, kinds: used } = corpus[i]!
      const res = await listModels(HEADERS[i % HEADERS.length]!(key))
      const body: any = await res.json()
      if (res.status !== 401 || body.error?.code !== 'invalid_api_key') admitted.push(`${JSON.stringify(key)} (${used.join(', ')}) → ${res.status}`)
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker))
  expect(admitted).toEqual([])
  expect(lookups).toBe(0)
}, 120_000)
