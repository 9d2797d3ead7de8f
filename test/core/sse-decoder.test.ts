import { describe, expect, test } from 'bun:test'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { dataOf, encodeSseData, SSE_DONE, SseDecoder, SseFrameDecoder, type RawSseEvent, type SseFrame } from '../../src/core/sse/decoder.ts'
import { GatewayError } from '../../src/plugin-sdk/errors.ts'

const FIXTURES = path.resolve(import.meta.dir, '../fixtures')
const fixtureBytes = (name: string) => new Uint8Array(readFileSync(path.join(FIXTURES, name)))

/** Feeds `parts` through one streaming TextDecoder (as a network reader would) and one SseDecoder. */
function decodeParts(parts: Uint8Array[]): RawSseEvent[] {
  const text = new TextDecoder()
  const sse = new SseDecoder()
  const out: RawSseEvent[] = []
  for (const part of parts) out.push(...sse.push(text.decode(part, { stream: true })))
  const tail = text.decode()
  if (tail) out.push(...sse.push(tail))
  out.push(...sse.flush())
  return out
}

const decodeText = (text: string): RawSseEvent[] => {
  const sse = new SseDecoder()
  return [...sse.push(text), ...sse.flush()]
}

const fields = (events: RawSseEvent[]) => events.map(({ event, data }) => ({ event, data }))
const rawText = (events: RawSseEvent[]) => events.map((e) => e.raw).join('')

/** An independent reading of a `\n`-framed body where every event is a single `data:` line. */
function naiveDataEvents(text: string) {
  return text
    .split('\n\n')
    .filter((block) => block !== '')
    .map((block) => {
      expect(block.startsWith('data: ')).toBe(true)
      return { event: null, data: block.slice('data: '.length) }
    })
}

/**
 * Splits `bytes` in two at every offset and returns the offsets whose decode differs from `expected`
 * (every field, the raw text included).
 */
function mismatchesAtEveryOffset(bytes: Uint8Array, expected: RawSseEvent[]): number[] {
  const bad: number[] = []
  for (let cut = 0; cut <= bytes.length; cut++) {
    if (!Bun.deepEquals(decodeParts([bytes.subarray(0, cut), bytes.subarray(cut)]), expected, true)) bad.push(cut)
  }
  return bad
}

/** Deterministic sample of (i, j) cut pairs: a PRNG spread plus every pair in a window around `focus`. */
function threeWayCuts(length: number, focus: number, window = 24, samples = 400): [number, number][] {
  const cuts: [number, number][] = []
  let seed = 12345
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff
    return seed % n
  }
  for (let k = 0; k < samples; k++) {
    const a = rand(length + 1)
    const b = rand(length + 1)
    cuts.push(a <= b ? [a, b] : [b, a])
  }
  const lo = Math.max(0, focus - window)
  const hi = Math.min(length, focus + window)
  for (let i = lo; i <= hi; i++) for (let j = i; j <= hi; j++) cuts.push([i, j])
  return cuts
}

const CHAT = 'openai-chat-stream.sse'
const TOOL = 'openai-tool-stream.sse'

describe('SseDecoder on recorded OpenAI streams', () => {
  test('the chat fixture is what it claims to be (include_usage, CJK, 4-byte emoji, ZWJ sequence split)', () => {
    const text = readFileSync(path.join(FIXTURES, CHAT), 'utf8')
    const events = decodeText(text)
    expect(fields(events)).toEqual(naiveDataEvents(text))
    expect(events.at(-1)?.data).toBe('[DONE]')
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data))
    expect(chunks.every((c) => 'usage' in c)).toBe(true)
    expect(chunks.at(-1).choices).toEqual([])
    expect(chunks.at(-1).usage.total_tokens).toBeGreaterThan(0)
    const content = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')
    expect(content).toContain('你好，世界')
    expect(content).toContain('🌍') // U+1F30D, 4 bytes in UTF-8
    expect(content).toContain('👨\u200d👩\u200d👧\u200d👦')
    // The ZWJ family is split across two chunks at a code-point boundary, as OpenAI does.
    expect(chunks.some((c) => c.choices[0]?.delta?.content === '\u200d👧\u200d👦')).toBe(true)
  })

  test('the tool fixture streams two parallel calls by index', () => {
    const text = readFileSync(path.join(FIXTURES, TOOL), 'utf8')
    const events = decodeText(text)
    expect(fields(events)).toEqual(naiveDataEvents(text))
    const args: string[] = []
    for (const e of events.slice(0, -1)) {
      for (const call of JSON.parse(e.data).choices[0]?.delta?.tool_calls ?? []) {
        args[call.index] = (args[call.index] ?? '') + (call.function?.arguments ?? '')
      }
    }
    expect(args.map((a) => JSON.parse(a))).toEqual([{ city: 'Paris' }, { city: '東京' }])
  })

  for (const name of [CHAT, TOOL]) {
    test(`${name}: split in two at every byte offset gives the unsplit events and raw text`, () => {
      const bytes = fixtureBytes(name)
      const text = new TextDecoder().decode(bytes)
      const whole = decodeText(text)
      expect(rawText(whole)).toBe(text)
      expect(mismatchesAtEveryOffset(bytes, whole)).toEqual([])
    }, 20_000) // 13,549 decodes of the 13.5 KB chat recording: about a second alone, several on a loaded CI box
  }

  test(`${CHAT}: three-way splits (sampled, and every pair around the ZWJ sequence)`, () => {
    const bytes = fixtureBytes(CHAT)
    const text = new TextDecoder().decode(bytes)
    const whole = decodeText(text)
    expect(rawText(whole)).toBe(text)
    const focus = Buffer.from(bytes).indexOf(Buffer.from('👨\u200d👩'))
    expect(focus).toBeGreaterThan(0)
    const bad: [number, number][] = []
    for (const [i, j] of threeWayCuts(bytes.length, focus)) {
      if (!Bun.deepEquals(decodeParts([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)]), whole, true)) bad.push([i, j])
    }
    expect(bad).toEqual([])
  })

  test('one chunk per byte', () => {
    const bytes = fixtureBytes(TOOL)
    const text = new TextDecoder().decode(bytes)
    const parts = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1))
    const events = decodeParts(parts)
    expect(fields(events)).toEqual(fields(decodeText(text)))
    expect(rawText(events)).toBe(text)
  })
})

describe('SseDecoder line endings', () => {
  // The tool fixture (smaller, CJK inside JSON) keeps every-offset runs quick; the chat fixture is covered above.
  const lf = readFileSync(path.join(FIXTURES, TOOL), 'utf8')
  const expected = fields(decodeText(lf))

  test('CRLF-framed: same events at every split, raw is byte-exact', () => {
    const crlf = lf.replaceAll('\n', '\r\n')
    const bytes = new TextEncoder().encode(crlf)
    const whole = decodeText(crlf)
    expect(fields(whole)).toEqual(expected)
    expect(rawText(whole)).toBe(crlf)
    expect(mismatchesAtEveryOffset(bytes, whole)).toEqual([])
  })

  test('CR-framed: same events and byte-exact raw text at every split', () => {
    const cr = lf.replaceAll('\n', '\r')
    const bytes = new TextEncoder().encode(cr)
    const whole = decodeText(cr)
    expect(fields(whole)).toEqual(expected)
    // A trailing lone `\r` may be half of `\r\n`, so the last event only comes out of flush().
    expect(rawText(whole)).toBe(cr)
    expect(mismatchesAtEveryOffset(bytes, whole)).toEqual([])
  })

  test('CR-framed: the final event keeps its own `\\r\\r` terminator', () => {
    const cr = 'data: a\r\rdata: [DONE]\r\r'
    expect(rawText(decodeText(cr))).toBe(cr)
  })

  test('mixed line endings in one stream', () => {
    const text = 'data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\ndata: e\n\r\n'
    const events = decodeText(text)
    expect(fields(events)).toEqual([
      { event: null, data: 'a' },
      { event: null, data: 'b' },
      { event: null, data: 'c' },
      { event: null, data: 'd\ne' },
    ])
    expect(rawText(events)).toBe(text)
  })

  test('a CRLF pair split across pushes is one line end, not two', () => {
    const sse = new SseDecoder()
    expect(sse.push('data: a\r')).toEqual([])
    expect(sse.push('\n\r')).toEqual([])
    expect(sse.push('\ndata: b\r\n\r\n')).toEqual([
      { event: null, data: 'a', raw: 'data: a\r\n\r\n' },
      { event: null, data: 'b', raw: 'data: b\r\n\r\n' },
    ])
  })
})

describe('SseDecoder fields', () => {
  test('comments: comment-only blocks are forwarded with empty data; comments inside an event are skipped', () => {
    const text = ': keep-alive\n\n: one\n: two\n\ndata: x\n: inside\ndata: y\n\n'
    const events = decodeText(text)
    expect(events).toEqual([
      { event: null, data: '', raw: ': keep-alive\n\n' },
      { event: null, data: '', raw: ': one\n: two\n\n' },
      { event: null, data: 'x\ny', raw: 'data: x\n: inside\ndata: y\n\n' },
    ])
  })

  test('multi-line data joins with \\n; empty data lines count', () => {
    const events = decodeText('data: line 1\ndata: line 2\ndata\ndata:\ndata: end\n\n')
    expect(fields(events)).toEqual([{ event: null, data: 'line 1\nline 2\n\n\nend' }])
  })

  test('event names, a single optional space after the colon, unknown fields ignored', () => {
    const events = decodeText('event: error\ndata: {"error":{"message":"boom"}}\n\nevent:ping\ndata:  two spaces\nid: 7\nretry: 1000\nfoo: bar\n\n')
    expect(fields(events)).toEqual([
      { event: 'error', data: '{"error":{"message":"boom"}}' },
      { event: 'ping', data: ' two spaces' },
    ])
  })

  test('an event with only an event field is dispatched with empty data', () => {
    expect(fields(decodeText('event: done\n\n'))).toEqual([{ event: 'done', data: '' }])
  })

  test('blank lines between events produce nothing', () => {
    const text = '\n\n\ndata: a\n\n\n\ndata: b\n\n'
    const events = decodeText(text)
    expect(fields(events)).toEqual([
      { event: null, data: 'a' },
      { event: null, data: 'b' },
    ])
    expect(events.map((e) => e.data)).toEqual(['a', 'b'])
  })

  test('a colon inside the value is kept', () => {
    expect(fields(decodeText('data: {"a":"b:c"}\n\n'))).toEqual([{ event: null, data: '{"a":"b:c"}' }])
  })
})

describe('SseDecoder flush', () => {
  test('a final event without its blank line is dispatched by flush, re-terminated with \\n\\n', () => {
    for (const tail of ['', '\n', '\r\n', '\r']) {
      const sse = new SseDecoder()
      expect(sse.push(`data: a\n\ndata: [DONE]${tail}`)).toEqual([{ event: null, data: 'a', raw: 'data: a\n\n' }])
      expect(sse.flush()).toEqual([{ event: null, data: '[DONE]', raw: 'data: [DONE]\n\n' }])
      expect(sse.flush()).toEqual([])
    }
  })

  test('a final multi-line event without its blank line keeps every line', () => {
    const sse = new SseDecoder()
    expect(sse.push('event: x\ndata: 1\ndata: 2')).toEqual([])
    expect(sse.flush()).toEqual([{ event: 'x', data: '1\n2', raw: 'event: x\ndata: 1\ndata: 2\n\n' }])
  })

  test('flush after a complete stream, or of nothing, or of a dangling comment, yields nothing', () => {
    const sse = new SseDecoder()
    sse.push('data: a\n\n')
    expect(sse.flush()).toEqual([])
    expect(new SseDecoder().flush()).toEqual([])
    const withComment = new SseDecoder()
    withComment.push(': bye')
    expect(withComment.flush()).toEqual([])
  })

  test('the decoder is reusable after flush', () => {
    const sse = new SseDecoder()
    sse.push('data: one')
    sse.flush()
    expect(sse.push('data: two\n\n')).toEqual([{ event: null, data: 'two', raw: 'data: two\n\n' }])
  })
})

describe('SSE encoders', () => {
  test('encodeSseData and SSE_DONE round-trip through the decoder', () => {
    const json = JSON.stringify({ content: 'a\nb 你好 🌍' })
    const text = encodeSseData(json) + SSE_DONE
    expect(fields(decodeText(text))).toEqual([
      { event: null, data: json },
      { event: null, data: '[DONE]' },
    ])
    expect(rawText(decodeText(text))).toBe(text)
  })
})

describe('SseFrameDecoder (bytes)', () => {
  const bytes = (text: string) => new TextEncoder().encode(text)

  test('an event inside one chunk is a view of it, not a copy; one that spans chunks is gathered', () => {
    const decoder = new SseFrameDecoder()
    const chunk = bytes('data: one\n\ndata: tw')
    const [one] = decoder.push(chunk)
    expect(one!.bytes).toBe(chunk)
    expect(dataOf(one!)).toBe('one')
    const [two] = decoder.push(bytes('o\n\n'))
    expect(two!.bytes).not.toBe(chunk)
    expect(new TextDecoder().decode(two!.bytes.subarray(two!.start, two!.end))).toBe('data: two\n\n')
  })

  test('a byte-order mark that starts the stream is not part of the first field name', () => {
    const decoder = new SseFrameDecoder()
    const frames = [...decoder.push(bytes('\ufeffdata: a\n\n\ufeffdata: b\n\n')), ...decoder.flush()]
    // A BOM later on makes an unknown field: that block is passed on with no data, like comments.
    expect(frames.map((f) => (f.data.length === 0 ? null : dataOf(f)))).toEqual(['a', null])
  })

  test('past maxEventBytes it throws 502 upstream_event_too_large, keeping the events before it, complete or still growing', () => {
    for (const parts of [['data: ok\n\n' + `data: ${'x'.repeat(200)}\n\n`], ['data: ok\n\ndata: ', ...new Array(10).fill('x'.repeat(30))]]) {
      const decoder = new SseFrameDecoder(100)
      const frames: SseFrame[] = []
      const error = (() => {
        try {
          for (const part of parts) decoder.push(bytes(part), frames)
        } catch (error) {
          return error
        }
      })()
      expect(GatewayError.is(error) && error.status === 502 && error.code === 'upstream_event_too_large').toBe(true)
      expect(frames.map(dataOf)).toEqual(['ok'])
    }
  })

  test('an event just at the limit passes', () => {
    const event = `data: ${'x'.repeat(92)}\n\n`
    expect(bytes(event).length).toBe(100)
    const decoder = new SseFrameDecoder(100)
    expect(decoder.push(bytes(event.slice(0, 50))).length).toBe(0)
    expect(decoder.push(bytes(event.slice(50))).map(dataOf)).toEqual(['x'.repeat(92)])
  })
})
