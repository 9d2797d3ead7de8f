import { definePlugin, t } from '@conduit/plugin-sdk'

// Deliberately simple: local@domain.tld, the shape that matters for prompts.
const EMAIL = /[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g

/**
 * Redacts e-mail addresses from chat messages, completion prompts and embedding inputs before they leave
 * the gateway. Built on its own against the public SDK and loaded by path from the config.
 */
export default definePlugin({
  name: 'redact-email',
  version: '1.0.0',
  apiVersion: 1,
  priority: 500,
  configSchema: t.Object({ replacement: t.String({ default: '[email redacted]' }) }),
  setup(api) {
    const replacement: string = api.config.replacement

    return {
      onRequestBody(ctx) {
        const body = ctx.body
        if (!body) return
        let count = 0
        const redact = (text: string) =>
          text.replace(EMAIL, () => {
            count++
            return replacement
          })
        const redactValue = (value: unknown): unknown =>
          typeof value === 'string' ? redact(value) : Array.isArray(value) ? value.map(redactValue) : value

        if (Array.isArray(body.messages)) {
          body.messages = body.messages.map((message: any) => {
            if (typeof message.content === 'string') return { ...message, content: redact(message.content) }
            if (Array.isArray(message.content)) {
              return {
                ...message,
                content: message.content.map((part: any) => (part?.type === 'text' && typeof part.text === 'string' ? { ...part, text: redact(part.text) } : part)),
              }
            }
            return message
          })
        }
        if ('prompt' in body) body.prompt = redactValue(body.prompt)
        if ('input' in body) body.input = redactValue(body.input)
        if (count > 0) ctx.setHeader('x-conduit-redacted-emails', String(count))
      },
    }
  },
})
