import { badRequest } from './errors.ts'

/*
 * Small pieces every translating adapter needs when it turns an OpenAI chat request into another API's
 * shape. Errors name the offending field the way OpenAI does (`messages[2].content[0]`).
 */

/** String content or an array of text parts, joined; any other part is a 400 naming it. */
export function textOf(content: unknown, param: string): string {
  if (content == null) return ''
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) throw badRequest('Message content must be a string or an array of parts.', `${param}.content`)
  return content
    .map((part: any, j: number) => {
      if (part?.type === 'text' && typeof part.text === 'string') return part.text
      throw badRequest(`Only text parts are allowed here, got '${part?.type}'.`, `${param}.content[${j}]`, 'unsupported_content')
    })
    .join('')
}

/** A tool call's `arguments` (a JSON string, or already an object) as an object; '' means none. */
export function toolArguments(args: unknown, param: string): Record<string, unknown> {
  if (args === undefined || args === null || (typeof args === 'string' && args.trim() === '')) return {}
  let input: unknown
  try {
    input = typeof args === 'string' ? JSON.parse(args) : args
  } catch {
    throw badRequest('Tool call arguments must be a JSON object.', param, 'invalid_tool_arguments')
  }
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw badRequest('Tool call arguments must be a JSON object.', param, 'invalid_tool_arguments')
  }
  return input as Record<string, unknown>
}

/** `data:<mime>;base64,<data>` split into its parts; null for anything else (an http URL, say). */
export function parseDataUrl(url: string): { mimeType: string; data: string } | null {
  const match = /^data:([^;,]+);base64,(.*)$/s.exec(url)
  return match ? { mimeType: match[1]!, data: match[2]! } : null
}
