/** Rough token count when a provider reports none (accounting, reservations): ~4 characters per token. */
export const estimateTokens = (text: string) => Math.ceil(text.length / 4)

/**
 * An image where the provider reports no count: what gpt-4o bills a 1024x1024 picture (85 + 4 tiles of 170), or 85
 * at `detail: "low"`. Claude bills a picture of that size about 1,400, Gemini 258 a tile.
 */
const IMAGE_TOKENS = 765
const LOW_DETAIL_IMAGE_TOKENS = 85
/** The `image_url` parts of chat messages (the Responses and Messages doors' images arrive translated into these). */
export function imageParts(messages: unknown): Record<string, any>[] {
  const parts: Record<string, any>[] = []
  if (!Array.isArray(messages)) return parts
  for (const message of messages) {
    if (Array.isArray(message?.content)) for (const part of message.content) if (part?.type === 'image_url') parts.push(part)
  }
  return parts
}

/**
 * The prompt of any OpenAI request body, estimated: chat `messages`, completion `prompt` or embedding `input`. An
 * image counts as a picture, not as the characters of its URL (a data URL's base64 would be tens of thousands).
 */
export function estimatePromptTokens(body: Record<string, any>): number {
  let characters = JSON.stringify(body.messages ?? body.prompt ?? body.input ?? '').length
  let images = 0
  for (const part of imageParts(body.messages)) {
    characters -= String(part.image_url?.url ?? '').length
    images += part.image_url?.detail === 'low' ? LOW_DETAIL_IMAGE_TOKENS : IMAGE_TOKENS
  }
  return Math.ceil(characters / 4) + images
}
