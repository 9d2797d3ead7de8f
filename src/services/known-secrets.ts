/**
 * Secret values the gateway holds (provider keys, the master key), kept by owner so a catalog reload replaces
 * its set. Log lines and any upstream text we relay are scrubbed of them by value: a provider that quotes our
 * key in an error message must not put it in a log or in a client's hands.
 */

/** Shorter values would scrub ordinary words; real credentials are far longer. */
const MIN_LENGTH = 8
const REDACTED = '[REDACTED]'
/** Virtual keys and OpenAI-style keys are recognisable even when the gateway never held them. */
const SECRET_SHAPES = /\b(condt_[0-9A-Za-z]{8,}|sk-[A-Za-z0-9_-]{8,})/g

const owners = new Map<string, string[]>()
let pattern: RegExp | null = null

const escape = (value: string) => value.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

/** Replaces the secrets of one owner (none: forgets it). A credential packed as `id:secret:token` is also known by its parts. */
export function setSecrets(owner: string, values: Iterable<string | null | undefined>) {
  const known = new Set<string>()
  for (const value of values) {
    if (!value) continue
    for (const part of [value, ...value.split(':')]) if (part.length >= MIN_LENGTH) known.add(part)
  }
  if (known.size > 0) owners.set(owner, [...known])
  else owners.delete(owner)
  pattern = null
}

export function scrubSecrets(text: string): string {
  let out = text.replace(SECRET_SHAPES, (s) => `${s.slice(0, 6)}…${REDACTED}`)
  if (pattern === null) {
    // Longest first, so a value that contains another is replaced whole.
    const all = [...owners.values()].flat().sort((a, b) => b.length - a.length)
    pattern = all.length > 0 ? new RegExp(all.map(escape).join('|'), 'g') : /$^/
  }
  if (owners.size > 0) out = out.replace(pattern, REDACTED)
  return out
}
