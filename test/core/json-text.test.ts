import { describe, expect, test } from 'bun:test'
import { jsonText } from '../../src/plugin-sdk/json-text.ts'

/** What an adapter does with a client's text: parse it, change its top level, and ask for the upstream text. */
function forward(text: string, change: (body: Record<string, any>) => Record<string, any>) {
  const body = JSON.parse(text)
  const upstream = change(body)
  return { upstream, out: jsonText(upstream, { text, body }) }
}

const mapModel = (model: string) => (body: Record<string, any>) => ({ ...body, model })

describe('jsonText: the client text with the changes spliced in', () => {
  test('unchanged: the very text the client sent', () => {
    const text = '{ "messages": [ {"role": "user", "content": "hi"} ],\n  "model": "m" }'
    expect(forward(text, (b) => ({ ...b })).out).toBe(text)
  })

  test('a mapped model: only its value changes, spacing and numbers the parse would round stay as sent', () => {
    const text = '{\n  "seed": 12345678901234567890,\n  "model" : "my-alias",\n  "temperature": 0.10000000000000000001,\n  "messages": [{"role":"user","content":"say \\"model\\": \\"x\\""}]\n}'
    const { out } = forward(text, mapModel('gpt-4o-mini'))
    expect(out).toBe(text.replace('"my-alias"', '"gpt-4o-mini"'))
    expect(out).toContain('12345678901234567890')
  })

  test('an added key goes at the end; a key already asked for keeps the text', () => {
    const text = '{"model":"m","stream":true,"messages":[]}  '
    const ask = (b: Record<string, any>) => ({ ...b, model: 'gpt-4o', stream_options: { include_usage: true } })
    const { upstream, out } = forward(text, ask)
    expect(out).toBe('{"model":"gpt-4o","stream":true,"messages":[],"stream_options":{"include_usage":true}}  ')
    expect(JSON.parse(out)).toEqual(upstream)
    expect(forward('{}', () => ({ model: 'x' })).out).toBe('{"model":"x"}')
  })

  test('a model name with escapes in it is found whole', () => {
    const text = '{"model":"a \\"quoted\\" \\\\ name é","n":1}'
    const { upstream, out } = forward(text, mapModel('b'))
    expect(out).toBe('{"model":"b","n":1}')
    expect(JSON.parse(out)).toEqual(upstream)
  })

  test('what cannot be spliced exactly is serialized again', () => {
    const cases: [string, (b: Record<string, any>) => Record<string, any>][] = [
      // A nested "model" key: the literal is not unique.
      ['{"model":"m","metadata":{"model":"m"}}', mapModel('x')],
      // The top-level key escaped, a nested literal the only one written plainly: splicing that would leave the
      // provider the client's own model name, charged at the mapped one's price.
      ['{"mod\\u0065l":"gpt-4o","metadata":{"model":"gpt-4o"}}', mapModel('gpt-4o-mini')],
      // A repeated key: which one counts is the parser's choice.
      ['{"model":"cheap","model":"m"}', mapModel('x')],
      // A key removed (a dropped parameter), an object changed.
      ['{"model":"m","logit_bias":{"1":2}}', ({ logit_bias, ...rest }) => rest],
      ['{"model":"m","stream_options":{"include_obfuscation":false}}', (b) => ({ ...b, stream_options: { ...b.stream_options, include_usage: true } })],
      // A number changed.
      ['{"model":"m","max_tokens":10}', (b) => ({ ...b, max_tokens: 20 })],
    ]
    for (const [text, change] of cases) {
      const { upstream, out } = forward(text, change)
      expect(out).toBe(JSON.stringify(upstream))
    }
  })

  test('escapes other than of letters and digits leave the splice on (non-ASCII text, HTML-safe encoders)', () => {
    const text = '{"model":"m","messages":[{"role":"user","content":"caf\\u00e9 \\u003cb\\u003e \\ud83d\\ude00"}]}'
    expect(forward(text, mapModel('x')).out).toBe(text.replace('"m"', '"x"'))
  })

  test('random bodies, spacing and changes: the text always parses to what the adapter built', () => {
    let seed = 7
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
    const words = ['model', 'm', 'gpt', 'x"y', 'a\\b', 'é', '\u2028', 'messages', 'content', 'stream']
    const word = () => words[Math.floor(random() * words.length)]!
    const value = (depth: number): unknown => {
      const r = random()
      if (depth > 2 || r < 0.3) return word()
      if (r < 0.45) return Math.floor(random() * 1e6) / 100
      if (r < 0.55) return random() < 0.5
      if (r < 0.75) return Array.from({ length: Math.floor(random() * 3) }, () => value(depth + 1))
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 3) }, () => [word(), value(depth + 1)]))
    }
    let spliced = 0
    for (let i = 0; i < 2000; i++) {
      const body: Record<string, unknown> = { model: word() }
      for (let k = Math.floor(random() * 4); k > 0; k--) body[word() + k] = value(0)
      const text = JSON.stringify(body, null, Math.floor(random() * 3))
      const { upstream, out } = forward(text, (b) => {
        const next: Record<string, any> = { ...b, model: random() < 0.7 ? word() + '-mapped' : b.model }
        if (random() < 0.5) next.stream_options = { include_usage: true }
        if (random() < 0.1) delete next[Object.keys(next).at(-1)!]
        return next
      })
      expect(JSON.parse(out)).toEqual(upstream)
      if (out !== JSON.stringify(upstream)) spliced++
    }
    // Most of them took the splice (the rest had a second "model" somewhere, or lost a key).
    expect(spliced).toBeGreaterThan(1000)
  })
})
