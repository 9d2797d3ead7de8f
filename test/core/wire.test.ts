import { describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { extractUsage, floatsToBase64, spliceModel } from '../../src/core/wire.ts'
import { estimateTokens } from '../../src/plugin-sdk/tokens.ts'

describe('spliceModel', () => {
  test('replaces the top-level model of a chunk and keeps everything else byte-identical', () => {
    const chunk =
      '{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1760538412,"model":"gpt-4o-2024-08-06","system_fingerprint":"fp_x","choices":[{"index":0,"delta":{"content":"你好 🌍"},"logprobs":null,"finish_reason":null}]}'
    const out = spliceModel(chunk, 'my-alias')
    expect(out).toBe(chunk.replace('"model":"gpt-4o-2024-08-06"', '"model":"my-alias"'))
    expect(JSON.parse(out)).toEqual({ ...JSON.parse(chunk), model: 'my-alias' })
  })

  test('a value with escaped quotes and backslashes is replaced as a whole', () => {
    const json = JSON.stringify({ model: 'we"ird\\mo\\"del"', x: 1, y: '"model":"no"' })
    expect(json).toContain('we\\"ird\\\\mo\\\\\\"del\\"')
    const out = spliceModel(json, 'alias')
    expect(JSON.parse(out)).toEqual({ model: 'alias', x: 1, y: '"model":"no"' })
  })

  test('a "model" key inside content text is JSON-escaped, so only the real key is touched', () => {
    const body = {
      id: 'chatcmpl-2',
      choices: [{ index: 0, delta: { content: 'config: {"model": "gpt-3", "model":"x"}' } }],
      model: 'gpt-4o-2024-08-06',
    }
    const json = JSON.stringify(body)
    expect(json.indexOf('"model"')).toBe(json.lastIndexOf('"model"')) // the only unescaped occurrence
    const out = spliceModel(json, 'alias')
    expect(JSON.parse(out)).toEqual({ ...body, model: 'alias' })
  })

  test('whitespace around the colon (pretty-printed upstream JSON)', () => {
    for (const json of ['{"model": "a"}', '{"model"  :   "a", "n": 1}', JSON.stringify({ model: 'a', n: [1, 2] }, null, 2)]) {
      const out = spliceModel(json, 'alias')
      expect(JSON.parse(out).model).toBe('alias')
      expect({ ...JSON.parse(out), model: 'a' }).toEqual(JSON.parse(json))
    }
  })

  test('returns the very same string when there is no model key, the value matches, or it is not a string', () => {
    for (const json of ['{"object":"list","data":[]}', '{"model":"alias","x":1}', '{"model":null}', '{"model":42}', '{"models":"a"}', '']) {
      expect(spliceModel(json, 'alias')).toBe(json)
    }
  })

  test('the alias is JSON-encoded (quotes, unicode), or taken pre-encoded', () => {
    const out = spliceModel('{"model":"m"}', 'team "α" model')
    expect(JSON.parse(out).model).toBe('team "α" model')
    expect(spliceModel('{"model":"m","x":2}', 'ignored', '"pre-encoded"')).toBe('{"model":"pre-encoded","x":2}')
  })

  test('an empty model value is replaced', () => {
    expect(spliceModel('{"model":"","x":1}', 'alias')).toBe('{"model":"alias","x":1}')
  })
})

/** Exactly how openai-node decodes base64 embeddings (src/internal/utils/base64.ts `toFloat32Array`). */
function sdkDecode(base64: string): number[] {
  const buf = Buffer.from(base64, 'base64')
  if (buf.length % Float32Array.BYTES_PER_ELEMENT !== 0) throw new RangeError('byte length must be a multiple of 4')
  return Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / Float32Array.BYTES_PER_ELEMENT))
}

describe('floatsToBase64', () => {
  test('known encodings (float32 little-endian)', () => {
    expect(floatsToBase64([])).toBe('')
    expect(floatsToBase64([1])).toBe('AACAPw==') // 0x3f800000 LE
    expect(floatsToBase64([-2])).toBe('AAAAwA==') // 0xc0000000 LE
    expect(floatsToBase64([0, 1])).toBe(Buffer.from([0, 0, 0, 0, 0, 0, 0x80, 0x3f]).toString('base64'))
  })

  test('decodes back with the SDK algorithm to the float32-rounded values', () => {
    const values = [0, -0, 1, -1, 0.1, -0.123456789, 1e-8, 1.401298464324817e-45, 3.4028234663852886e38, 65504.5, Infinity, -Infinity]
    const decoded = sdkDecode(floatsToBase64(values))
    expect(decoded).toEqual(values.map(Math.fround))
    expect(Object.is(decoded[1], -0)).toBe(true)
    expect(Number.isNaN(sdkDecode(floatsToBase64([Number.NaN]))[0])).toBe(true)
  })

  test('a 3072-dimension vector round-trips', () => {
    let seed = 7
    const values = Array.from({ length: 3072 }, () => {
      seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff
      return seed / 0x7fffffff - 0.5
    })
    const base64 = floatsToBase64(values)
    expect(base64.length).toBe(Math.ceil((3072 * 4) / 3) * 4)
    expect(sdkDecode(base64)).toEqual(values.map(Math.fround))
  })

  test('the real openai SDK decodes it (default encoding_format base64)', async () => {
    const values = [0.5, -0.25, 0.1, 12345.678, -1e-3]
    let requested: any
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch(req) {
        requested = await req.json()
        return Response.json({
          object: 'list',
          data: [{ object: 'embedding', index: 0, embedding: floatsToBase64(values) }],
          model: 'text-embedding-3-small',
          usage: { prompt_tokens: 1, total_tokens: 1 },
        })
      },
    })
    try {
      const client = new OpenAI({ apiKey: 'sk-test', baseURL: `http://127.0.0.1:${server.port}/v1`, maxRetries: 0 })
      const res = await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hello' })
      expect(requested.encoding_format).toBe('base64')
      expect(res.data[0]?.embedding).toEqual(values.map(Math.fround))
    } finally {
      await server.stop(true)
    }
  })
})

describe('estimateTokens', () => {
  test('ceil(chars / 4)', () => {
    expect(estimateTokens('')).toBe(0)
    expect(estimateTokens('abc')).toBe(1)
    expect(estimateTokens('abcd')).toBe(1)
    expect(estimateTokens('abcde')).toBe(2)
  })
})

describe('extractUsage', () => {
  const usage = { prompt_tokens: 10, completion_tokens: 9, total_tokens: 19, prompt_tokens_details: { cached_tokens: 2 } }
  const body = (extra: Record<string, unknown>) => ({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'see "usage": {"total_tokens": 1}' } }], ...extra })

  test('finds the top-level usage object, compact or pretty-printed, with nested details', () => {
    expect(extractUsage(JSON.stringify(body({ usage })))).toEqual(usage)
    expect(extractUsage(JSON.stringify(body({ usage }), null, 2))).toEqual(usage)
    expect(extractUsage(JSON.stringify(body({ usage })).replace('"usage":', '"usage" :\t'))).toEqual(usage)
  })

  test('text that mentions usage inside a string is never mistaken for the key', () => {
    expect(extractUsage(JSON.stringify(body({})))).toBeNull()
    expect(extractUsage(JSON.stringify({ ...body({ usage }), tail: 'x "usage": {"a":1}' }))).toEqual(usage)
  })

  test('null, missing or broken usage gives null', () => {
    expect(extractUsage(JSON.stringify(body({ usage: null })))).toBeNull()
    expect(extractUsage('{"usage":{"prompt_tokens":1')).toBeNull()
    expect(extractUsage('{"id":"x"}')).toBeNull()
  })

  test('braces and escaped quotes inside strings of the usage object are skipped', () => {
    const withStrings = { usage: { ...usage, note: 'braces } and { in "strings" \\" too' } }
    expect(extractUsage(JSON.stringify(body(withStrings)))).toEqual(withStrings.usage)
  })
})
