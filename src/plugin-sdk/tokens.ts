/** Rough token count when a provider reports none (accounting, reservations): ~4 characters per token. */
export const estimateTokens = (text: string) => Math.ceil(text.length / 4)

/**
 * An image where the provider reports no count: what gpt-4o bills a 1024x1024 picture (85 + 4 tiles of 170), or 85
 * at `detail: "low"`. Claude bills a picture of that size about 1,400, Gemini 258 a tile.
 */
const IMAGE_TOKENS = 765
const LOW_DETAIL_IMAGE_TOKENS = 85
const IMAGE_PART = /"type":"(?:image_url|input_image)"/

/**
 * The prompt of any OpenAI request body, estimated: chat `messages`, completion `prompt` or embedding `input`. An
 * image counts as a picture, not as the characters of its URL (a data URL's base64 would be tens of thousands).
 */
export function estimatePromptTokens(body: Record<string, any>): number {
  const prompt = body.messages ?? body.prompt ?? body.input ?? ''
  const text = JSON.stringify(prompt)
  if (!IMAGE_PART.test(text)) return estimateTokens(text)
  let images = 0
  const withoutImages = JSON.stringify(prompt, (_name, value) => {
    if (value?.type !== 'image_url' && value?.type !== 'input_image') return value
    images += (value.image_url?.detail ?? value.detail) === 'low' ? LOW_DETAIL_IMAGE_TOKENS : IMAGE_TOKENS
    return { type: value.type }
  })
  return estimateTokens(withoutImages) + images
}
