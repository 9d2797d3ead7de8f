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

/** How one adapter turns each kind of content part (by its `type`) into its own blocks; text is always needed. */
type PartHandler<B> = (part: any, param: string) => B[]
export type PartHandlers<B> = { text: PartHandler<B> } & Record<string, PartHandler<B>>

/**
 * A user message's content as the provider's blocks: a string is one text part, every array part goes to the
 * handler for its type, and a type without a handler is a 400 naming the part.
 */
export function userParts<B>(content: unknown, param: string, handlers: PartHandlers<B>): B[] {
  if (typeof content === 'string' || content == null) return handlers.text({ type: 'text', text: content ?? '' }, `${param}.content`)
  if (!Array.isArray(content)) throw badRequest('Message content must be a string or an array of parts.', `${param}.content`)
  return content.flatMap((part: any, j: number) => {
    const partParam = `${param}.content[${j}]`
    const handle = typeof part?.type === 'string' && Object.hasOwn(handlers, part.type) ? handlers[part.type] : undefined
    if (!handle) throw badRequest(`Content parts of type '${part?.type}' are not supported by this provider.`, partParam, 'unsupported_content')
    return handle(part, partParam)
  })
}

/** Whether message content holds a part other than text (an image, a file): a tool result then goes as blocks. */
export const hasMedia = (content: unknown): content is unknown[] => Array.isArray(content) && content.some((part) => part?.type !== 'text')

/** An assistant turn's content in the history as text pieces: text and refusal parts, which other APIs take as plain text. */
export function assistantTexts(content: unknown, param: string): string[] {
  if (content == null) return []
  if (typeof content === 'string') return [content]
  if (!Array.isArray(content)) throw badRequest('Message content must be a string or an array of parts.', `${param}.content`)
  return content.map((part: any, j: number) => {
    if (part?.type === 'text') return String(part.text ?? '')
    if (part?.type === 'refusal') return String(part.refusal ?? '')
    throw badRequest(`Content parts of type '${part?.type}' are not supported here.`, `${param}.content[${j}]`, 'unsupported_content')
  })
}

/**
 * Chat usage from an API that counts the prompt tokens read from and written to its cache apart from the rest
 * (Anthropic, Bedrock): OpenAI's `prompt_tokens` includes both, and `prompt_tokens_details` names them, as writes
 * are billed at a price of their own. A count the provider left out stays out.
 */
export function promptCacheUsage(input = 0, cacheRead?: number | null, cacheWrite?: number | null, output = 0) {
  const prompt = input + (cacheRead ?? 0) + (cacheWrite ?? 0)
  const usage: Record<string, unknown> = { prompt_tokens: prompt, completion_tokens: output, total_tokens: prompt + output }
  const details: Record<string, number> = {}
  if (typeof cacheRead === 'number') details.cached_tokens = cacheRead
  if (cacheWrite) details.cache_write_tokens = cacheWrite
  if (typeof cacheRead === 'number' || cacheWrite) usage.prompt_tokens_details = details
  return usage
}
