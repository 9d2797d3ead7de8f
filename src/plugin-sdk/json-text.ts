/**
 * An upstream body as JSON text, made from the client's own text where that is exact. Serializing a parsed body
 * again was a third of a gateway's main thread for a 64 KB conversation (JSON.stringify and the collections its
 * output set off): the client's text already holds everything but what the adapter changed at the top level. That
 * text goes on with only those changes spliced in: a string value replaced (the model's name, mapped), keys added at
 * the end (`stream_options`). Numbers the parse would round (a 20-digit `seed`) and the client's key order go on as
 * sent.
 *
 * Anything else (a key removed or renamed, an object changed) is serialized as before, and so is a body whose text
 * could fool the splice: a replaced key is found by its literal `"name"`, which must occur exactly once, and no
 * `\u00XX` escape of a letter or digit may occur anywhere (`"mod\u0065l"` parses as the top-level `model` while the
 * literal found could be a nested one). Repeated keys (`{"n":1,"n":2}`) are forwarded as the client sent them, and
 * the provider's parser takes the last, as ours did.
 */
export interface SentJson {
  /** The body as the client sent it. */
  text: string
  /** Its parse, unchanged since. */
  body: Record<string, unknown>
}

/** A `\u00XX` escape of what a key is written with: a digit, or a character from '@' to DEL (letters, `_`). */
const LETTER_ESCAPE = /\\u00[4-7][0-9a-fA-F]|\\u003[0-9]/

export function jsonText(upstream: Record<string, unknown>, sent: SentJson | null): string {
  return (sent && spliced(upstream, sent)) ?? JSON.stringify(upstream)
}

/** The sent text with the changes made to its top level spliced in, or null when that cannot be done exactly. */
function spliced(upstream: Record<string, unknown>, { text, body }: SentJson): string | null {
  let replaced: { key: string; value: string }[] | null = null
  let added = ''
  for (const key in upstream) {
    const value = upstream[key]
    if (!Object.hasOwn(body, key)) {
      const json = JSON.stringify(value)
      if (json !== undefined) added += `,${JSON.stringify(key)}:${json}`
    } else if (value !== body[key]) {
      if (typeof value !== 'string' || typeof body[key] !== 'string') return null
      ;(replaced ??= []).push({ key, value })
    }
  }
  for (const key in body) if (!Object.hasOwn(upstream, key)) return null
  if (!replaced && !added) return text
  const end = text.lastIndexOf('}')
  if (end === -1) return null
  if (replaced && text.includes('\\u') && LETTER_ESCAPE.test(text)) return null
  const cuts: { from: number; to: number; value: string }[] = []
  for (const { key, value } of replaced ?? []) {
    const at = stringValueSpan(text, key, body[key] as string)
    if (!at) return null
    cuts.push({ ...at, value: JSON.stringify(value) })
  }
  cuts.sort((a, b) => a.from - b.from)
  let out = ''
  let from = 0
  for (const cut of cuts) {
    out += text.slice(from, cut.from) + cut.value
    from = cut.to
  }
  // `{}` gets no comma before its first key.
  if (added && Object.keys(body).length === 0) added = added.slice(1)
  return out + text.slice(from, end) + added + text.slice(end)
}

/** Where the string value of the key written `"key"` once in `text` is, if that value is `expected`. */
function stringValueSpan(text: string, key: string, expected: string): { from: number; to: number } | null {
  const literal = JSON.stringify(key)
  const at = text.indexOf(literal)
  if (at === -1 || text.indexOf(literal, at + literal.length) !== -1) return null
  const span = stringValueAfter(text, at + literal.length)
  // The literal is a key followed by a string: what it holds must be what the parse gave the top level.
  return span && JSON.parse(text.slice(span.from, span.to)) === expected ? span : null
}

/**
 * Where the JSON string value after a key ending at `i` lies (`: "…"`, its quotes included), or null when what
 * follows is not a string. The text twin of `stringValueAt` (core/sse/bytes.ts), which reads bytes.
 */
export function stringValueAfter(text: string, i: number): { from: number; to: number } | null {
  i = skipSpace(text, i)
  if (text.charCodeAt(i) !== 58) return null // ':'
  const from = skipSpace(text, i + 1)
  if (text.charCodeAt(from) !== 34) return null // not a string value
  for (let j = from + 1; j < text.length; j++) {
    const c = text.charCodeAt(j)
    if (c === 92) j++ // backslash escape
    else if (c === 34) return { from, to: j + 1 }
  }
  return null
}

function skipSpace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i)
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) return i
    i++
  }
}
