import { afterAll, beforeAll, expect, test } from 'bun:test'
import fc from 'fast-check'
import { readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ffmpeg, speak } from '../helpers/audio.ts'
import { startFakeOpenAIAudio, type FakeOpenAIAudio } from '../helpers/fake-openai-audio.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

/**
 * FZ2 for the audio validators: generated multipart bodies (fields, arrays, boundaries, truncated or foreign
 * files, real audio cut anywhere) and speech bodies against a running gateway with a healthy upstream. Every
 * answer is < 500 and every error is our envelope; the spool holds nothing afterwards. Seeded like fuzz.test.ts.
 */
const SEED = Number(process.env.CONDUIT_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31))
const RUNS = 150 * Number(process.env.CONDUIT_FUZZ_SCALE ?? 1)

let fake: FakeOpenAIAudio
let gw: TestGateway
let key: string
let samples: Uint8Array[]
const logs = { level: 'error', lines: [] as string[] }

beforeAll(async () => {
  fake = startFakeOpenAIAudio({ chunkDelayMs: 0 })
  gw = await startGateway({ audioMaxUploadBytes: 2 * 1024 * 1024 }, logs)
  await gw.admin('POST', '/providers', { name: 'openai', type: 'openai', base_url: fake.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/models', { name: 'whisper', targets: [{ provider: 'openai', model: 'whisper-1' }] })
  await gw.admin('POST', '/models', { name: 'tts', targets: [{ provider: 'openai', model: 'tts-1' }] })
  key = (await gw.admin('POST', '/keys', { name: 'fuzz' })).key
  const wav = await speak('Fuzz.')
  samples = [wav, await ffmpeg(wav, 'mp3'), await ffmpeg(wav, 'flac'), await ffmpeg(wav, 'ogg', ['-c:a', 'libopus']), new TextEncoder().encode('not audio'), new Uint8Array(0)]
  console.log(`audio fuzz seed ${SEED} (replay: CONDUIT_FUZZ_SEED=${SEED} bun test test/e2e/audio-fuzz.test.ts)`)
})

afterAll(async () => {
  await gw.close()
  fake.close()
})

/** Mostly what a client sends, sometimes anything: cases must reach the provider too, not only the refusals. */
const mostly = <A, B>(usual: fc.Arbitrary<A>, odd: fc.Arbitrary<B>): fc.Arbitrary<A | B> => fc.oneof({ arbitrary: usual, weight: 4 }, { arbitrary: odd, weight: 1 })

const fieldValue = fc.oneof(
  fc.constantFrom('json', 'text', 'srt', 'vtt', 'verbose_json', 'diarized_json', 'true', 'false', '0.5', '-1', '7', 'word', 'segment', 'auto', '{"type":"server_vad"}', '{', 'whisper', 'tts', ''),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
)
const fieldName = fc.constantFrom('model', 'language', 'prompt', 'response_format', 'temperature', 'timestamp_granularities[]', 'include[]', 'stream', 'chunking_strategy', 'user', 'api_base', 'file', 'x')
const validField = fc.oneof(
  fc.tuple(fc.constant('response_format'), fc.constantFrom('json', 'text', 'srt', 'vtt', 'verbose_json')),
  fc.tuple(fc.constant('language'), fc.constantFrom('en', 'fr')),
  fc.tuple(fc.constant('temperature'), fc.constantFrom('0', '0.2', '1')),
  fc.tuple(fc.constant('prompt'), fc.string({ maxLength: 30 })),
  fc.tuple(fc.constant('timestamp_granularities[]'), fc.constantFrom('word', 'segment')),
)

/** A multipart body written by hand, so that its boundary, headers and parts can be wrong in every way. */
const multipart = fc.record({
  boundary: fc.oneof(fc.constant('b0undary'), fc.stringMatching(/^[A-Za-z0-9'()+_,./:=?-]{1,70}$/)),
  fields: mostly(fc.array(validField, { maxLength: 3 }), fc.array(fc.tuple(fieldName, fieldValue), { maxLength: 8 })),
  model: mostly(fc.constant(true), fc.constant(false)),
  file: mostly(
    fc.record({ sample: fc.nat({ max: 3 }), cut: fc.constant(null), name: fc.constantFrom('a.wav', 'a.mp3', 'audio'), type: fc.constantFrom('audio/wav', '') }),
    fc.option(
      fc.record({ sample: fc.nat({ max: 5 }), cut: fc.option(fc.nat()), name: fc.constantFrom('a.wav', 'a.mp3', 'audio', 'x.png', '"q".wav', ''), type: fc.constantFrom('audio/wav', 'application/octet-stream', '') }),
      { nil: null },
    ),
  ),
  closing: mostly(fc.constant('--\r\n'), fc.constantFrom('--', '', '\r\n', 'garbage')),
  declaredType: mostly(fc.constant('multipart/form-data; boundary=B'), fc.constantFrom('multipart/form-data', 'application/json', 'multipart/form-data; boundary="B"', 'text/plain')),
})

function build(c: typeof multipart extends fc.Arbitrary<infer T> ? T : never): { body: Uint8Array; type: string } {
  const enc = new TextEncoder()
  const parts: Uint8Array[] = []
  const fields = c.model ? [['model', 'whisper'] as [string, string], ...c.fields] : c.fields
  for (const [name, value] of fields) parts.push(enc.encode(`--${c.boundary}\r\ncontent-disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`))
  if (c.file) {
    let bytes = samples[c.file.sample]!
    if (c.file.cut !== null) bytes = bytes.subarray(0, c.file.cut % (bytes.length + 1))
    parts.push(enc.encode(`--${c.boundary}\r\ncontent-disposition: form-data; name="file"; filename="${c.file.name}"\r\ncontent-type: ${c.file.type}\r\n\r\n`), bytes, enc.encode('\r\n'))
  }
  parts.push(enc.encode(`--${c.boundary}${c.closing}`))
  return { body: Buffer.concat(parts), type: c.declaredType.replace('B', c.boundary) }
}

const speech = fc.record(
  {
    model: mostly(fc.constant('tts'), fc.constantFrom('whisper', 'nope', '')),
    input: mostly(fc.string({ minLength: 1, maxLength: 60 }).filter((t) => t.trim().length > 0), fc.oneof(fc.constant(''), fc.constant('x'.repeat(4097)), fc.integer())),
    voice: mostly(fc.constantFrom('alloy', 'nova'), fc.oneof(fc.record({ id: fc.string({ maxLength: 10 }) }), fc.constant(null))),
    response_format: mostly(fc.constantFrom('mp3', 'opus', 'aac', 'flac', 'wav', 'pcm'), fc.constantFrom('ogg', 'MP3')),
    speed: mostly(fc.double({ min: 0.25, max: 4, noNaN: true }), fc.oneof(fc.double({ min: -10, max: 10, noNaN: true }), fc.constant('fast'))),
    stream_format: mostly(fc.constantFrom('audio', 'sse'), fc.constant('bogus')),
    instructions: fc.string({ maxLength: 20 }),
  },
  { requiredKeys: [] },
)

const statuses = new Map<number, number>()
const expectEnvelope = async (res: Response, what: string) => {
  const text = await res.text()
  statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
  expect(res.status, `${what} → ${res.status} ${text.slice(0, 200)}`).toBeLessThan(500)
  if (res.status >= 400) {
    const body = JSON.parse(text)
    expect(typeof body.error?.message, what).toBe('string')
    expect('type' in body.error && 'param' in body.error && 'code' in body.error, what).toBe(true)
  }
}

test('generated multipart uploads and speech bodies: never a 5xx, every error our envelope, nothing left spooled', async () => {
  await fc.assert(
    fc.asyncProperty(multipart, async (c) => {
      const { body, type } = build(c)
      const res = await fetch(`${gw.baseURL}/audio/transcriptions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': type }, body })
      await expectEnvelope(res, JSON.stringify({ ...c, fields: c.fields.slice(0, 3) }))
    }),
    { seed: SEED, numRuns: RUNS },
  )
  await fc.assert(
    fc.asyncProperty(speech, async (b) => {
      const res = await fetch(`${gw.baseURL}/audio/speech`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(b) })
      await expectEnvelope(res, JSON.stringify(b).slice(0, 200))
    }),
    { seed: SEED, numRuns: RUNS },
  )
  console.log(`audio fuzz statuses: ${[...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ')}`)
  expect(statuses.get(200) ?? 0, 'some cases must reach the provider, or the fuzz tests only the refusals').toBeGreaterThan(0)
  expect(logs.lines.filter((l) => l.includes('unhandled'))).toEqual([])
  expect((await fetch(`${gw.origin}/health`)).status).toBe(200)
  // Every spooled upload (and converted file) of this process is gone once its request ended.
  for (const dir of readdirSync(tmpdir()).filter((d) => d.startsWith(`conduit-spool-${process.pid}-`))) expect(readdirSync(join(tmpdir(), dir))).toEqual([])
}, 120_000)
