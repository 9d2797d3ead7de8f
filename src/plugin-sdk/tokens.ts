/** Rough token count when a provider reports none (accounting, reservations): ~4 characters per token. */
export const estimateTokens = (text: string) => Math.ceil(text.length / 4)

/** The prompt of any OpenAI request body, estimated: chat `messages`, completion `prompt` or embedding `input`. */
export const estimatePromptTokens = (body: Record<string, any>) => estimateTokens(JSON.stringify(body.messages ?? body.prompt ?? body.input ?? ''))
