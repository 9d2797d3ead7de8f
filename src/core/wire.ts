/** Small byte-and-text helpers for OpenAI wire data that avoid a full JSON parse on the hot path. */

import { stringValueAfter } from '../plugin-sdk/json-text.ts'

const MODEL_KEY = '"model"'

/**
 * Replaces the value of the first `"model"` key in a JSON text. In OpenAI responses and chunks the first
 * unescaped `"model"` key is the top-level one (nested content is JSON-escaped), so a scan is enough.
 * Returns the text unchanged when the value already matches, no key is found or its value is not a string.
 */
export function spliceModel(json: string, model: string, encodedModel = JSON.stringify(model)): string {
  const key = json.indexOf(MODEL_KEY)
  const value = key === -1 ? null : stringValueAfter(json, key + MODEL_KEY.length)
  if (!value || (value.to - value.from === encodedModel.length && json.startsWith(encodedModel, value.from))) return json
  return json.slice(0, value.from) + encodedModel + json.slice(value.to)
}

/**
 * The `usage` object of an OpenAI response, parsed on its own so the rest of the body can be forwarded as
 * bytes. `"usage"` followed directly by a quote cannot occur inside a JSON string (quotes there are
 * escaped), so the last occurrence is the key; usage sits at the top level, after the choices.
 */
export function extractUsage(json: string): Record<string, any> | null {
  const key = json.lastIndexOf('"usage"')
  if (key === -1) return null
  let i = key + 7
  for (let c = json.charCodeAt(i); c === 58 || c === 32 || c === 9 || c === 10 || c === 13; c = json.charCodeAt(++i)); // ':' and whitespace
  if (json.charCodeAt(i) !== 123) return null // null or not an object
  const start = i
  let depth = 0
  for (; i < json.length; i++) {
    const c = json.charCodeAt(i)
    if (c === 34) {
      // skip a string, honouring escapes
      for (i++; i < json.length && json.charCodeAt(i) !== 34; i++) if (json.charCodeAt(i) === 92) i++
    } else if (c === 123) depth++
    else if (c === 125 && --depth === 0) {
      try {
        return JSON.parse(json.slice(start, i + 1))
      } catch {
        return null
      }
    }
  }
  return null
}

/** The `openai` SDK asks for base64 embeddings by default and decodes them as float32 little-endian. */
export function floatsToBase64(values: number[]): string {
  const floats = new Float32Array(values.length)
  floats.set(values)
  // Float32Array uses the platform's byte order; every platform Bun supports is little-endian.
  return Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString('base64')
}
