import { expect, test } from 'bun:test'
import fc from 'fast-check'
import { dataOf, SseFrameDecoder, type SseFrame } from '../../src/core/sse/decoder.ts'

/**
 * FZ1: random event lists → serialised with random line ends (`\n`, `\r\n`, `\r`), comments, other fields and
 * stray blank lines → split at random byte boundaries → parsed. Every case must give back the original
 * events, each with its exact source bytes, and never throw. 10,000 cases per run.
 */
const NUM_RUNS = 10_000

/** A value: any code point but the line ends (which would end the line). */
const lineText = (maxLength: number) => fc.string({ unit: 'binary', maxLength }).map((s) => s.replace(/[\r\n]/g, ''))
const lineEnd = fc.constantFrom('\n', '\r\n', '\r')

interface Block {
  /** What a parser must report (null: a block of comments and other fields, passed on with no data). */
  event: { event: string | null; data: string } | null
  lines: string[]
}

/** One event: its data (newlines become several `data:` lines), an optional name, comments and ids among them. */
const eventBlock: fc.Arbitrary<Block> = fc
  .record({
    name: fc.option(lineText(12), { nil: null }),
    data: fc.array(lineText(40), { minLength: 0, maxLength: 4 }),
    extras: fc.array(fc.oneof(lineText(20).map((t) => `:${t}`), lineText(8).map((t) => `id: ${t}`), fc.constant('retry: 1000')), { maxLength: 2 }),
    spaceless: fc.boolean(),
  })
  .filter(({ name, data }) => name !== null || data.length > 0)
  .map(({ name, data, extras, spaceless }) => {
    // `data:x` and `data: x` are the same value; a value that starts with a space needs the separator space.
    const dataLines = data.map((line) => (spaceless && !line.startsWith(' ') ? `data:${line}` : `data: ${line}`))
    const lines = [...(name === null ? [] : [`event: ${name}`]), ...extras, ...dataLines]
    return { event: { event: name, data: data.join('\n') }, lines }
  })

const commentBlock: fc.Arbitrary<Block> = fc.array(lineText(20).map((t) => `:${t}`), { minLength: 1, maxLength: 2 }).map((lines) => ({ event: null, lines }))

/** A stream: its blocks, each followed by a blank line, some preceded by stray blank lines (which yield nothing). */
const stream = fc.array(fc.tuple(fc.oneof({ weight: 4, arbitrary: eventBlock }, { weight: 1, arbitrary: commentBlock }), fc.nat(2)), { maxLength: 12 })

/**
 * The stream's bytes and what each block's own bytes are. A bare `\r` must not be followed by a blank line
 * written `\n`: the two would read as one `\r\n`, so that blank line gets `\r\n` instead.
 */
function serialise(blocks: [Block, number][], ends: string[]) {
  let text = ''
  let n = 0
  const end = () => {
    let e = ends[n++ % ends.length]!
    if (e === '\n' && text.endsWith('\r')) e = '\r\n'
    return e
  }
  const raws: string[] = []
  for (const [block, strayBlanks] of blocks) {
    for (let i = 0; i < strayBlanks; i++) text += end()
    const start = text.length
    for (const line of block.lines) text += line + end()
    text += end()
    raws.push(text.slice(start))
  }
  return { text, raws }
}

const decodeAll = (bytes: Uint8Array, cuts: number[]): SseFrame[] => {
  const decoder = new SseFrameDecoder()
  const frames: SseFrame[] = []
  let from = 0
  for (const cut of [...cuts, bytes.length]) {
    decoder.push(bytes.subarray(from, cut), frames)
    from = cut
  }
  return decoder.flush(frames)
}

const utf8 = new TextDecoder('utf-8', { ignoreBOM: true })
const rawOf = (f: SseFrame) => utf8.decode(f.bytes.subarray(f.start, f.end))

test(`FZ1: ${NUM_RUNS} random streams split at random boundaries parse back to the original events`, () => {
  fc.assert(
    fc.property(stream, fc.array(lineEnd, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 12 }), (blocks, ends, rawCuts) => {
      const { text, raws } = serialise(blocks, ends)
      const bytes = new TextEncoder().encode(text)
      const cuts = [...new Set(rawCuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
      const frames = decodeAll(bytes, cuts)
      expect(frames.map((f) => (f.data.length === 0 && f.event === null ? null : { event: f.event, data: dataOf(f) }))).toEqual(blocks.map(([b]) => b.event))
      expect(frames.map(rawOf)).toEqual(raws)
    }),
    { numRuns: NUM_RUNS },
  )
})

test('FZ1: the same streams one byte at a time (every boundary at once), a sample of 500', () => {
  fc.assert(
    fc.property(stream, fc.array(lineEnd, { minLength: 1, maxLength: 5 }), (blocks, ends) => {
      const { text, raws } = serialise(blocks, ends)
      const bytes = new TextEncoder().encode(text)
      const frames = decodeAll(bytes, Array.from({ length: bytes.length }, (_, i) => i))
      expect(frames.map(rawOf)).toEqual(raws)
    }),
    { numRuns: 500 },
  )
})
