import { GatewayError } from '../../plugin-sdk/errors.ts'
import { estimatePromptTokens, estimateTokens } from '../../plugin-sdk/tokens.ts'
import type { ProviderAdapter, Target } from '../../plugin-sdk/types.ts'
import { openAIUsage } from '../../providers/anthropic/response.ts'
import { Attempt, type RequestCtx } from '../context.ts'
import type { FrontDoor } from '../front-door.ts'
import { readUpstreamText } from '../upstream-body.ts'
import { UpstreamCall, timeoutsFor, upstreamError, type Timeouts } from '../upstream.ts'
import { renderMessagesError } from './errors.ts'
import { toChat } from './request.ts'
import { messageFromChat } from './response.ts'
import { chatToMessagesStream, watchMessagesStream } from './stream.ts'

/** Largest count_tokens answer read (it is `{"input_tokens": N}`). */
const MAX_COUNT_BYTES = 64 * 1024

export interface MessagesDoorOptions {
  /** The adapters of a provider type (the plugin host's registry): a `messages` one counts tokens natively. */
  providers: (type: string) => ProviderAdapter | undefined
  timeouts: Timeouts
}

/**
 * Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) over the one pipeline: relayed to a
 * provider that speaks it, translated onto chat completions for any other.
 */
export function createMessagesDoor(options: MessagesDoorOptions): FrontDoor {
  return {
    operation: 'messages',
    async read(_ctx, body) {
      return { chat: toChat(body), native: body }
    },
    fromChat: (ctx, completion) => messageFromChat(completion, ctx.body?.stop),
    streamFromChat: (ctx) => chatToMessagesStream(ctx.body?.stop),
    nativeUsage: (body) => (body.usage && typeof body.usage === 'object' ? openAIUsage(body.usage) : null),
    watchNativeStream: () => watchMessagesStream(),
    renderError: renderMessagesError,
    async countTokens(ctx, body, targets) {
      const chat = toChat(body, true)
      const first = targets[0]
      const native = first && options.providers(first.provider.type)?.messages
      if (native) {
        try {
          return { input_tokens: await countNatively(ctx, first, native, body, options.timeouts) }
        } catch (error) {
          if (GatewayError.is(error) && error.status === 499) throw error
          ctx.log.warn({ requestId: ctx.id, provider: first.provider.name, err: error }, 'native count_tokens failed; answering with the estimate')
        }
      }
      // The gateway's estimate: the chat body's messages and its tool definitions, ~4 characters a token.
      return { input_tokens: estimatePromptTokens(chat) + (chat.tools ? estimateTokens(JSON.stringify(chat.tools)) : 0) }
    },
  }
}

/** Anthropic counts at `<messages URL>/count_tokens`, with the request's own body (no max_tokens). */
async function countNatively(ctx: RequestCtx, target: Target, adapter: NonNullable<ProviderAdapter['messages']>, body: Record<string, any>, defaults: Timeouts): Promise<number> {
  const upstream = await adapter.buildRequest(body, new Attempt(ctx, target, 1))
  const call = new UpstreamCall(ctx.signal, target.provider.name)
  try {
    const response = await call.fetch({ ...upstream, url: `${upstream.url}/count_tokens` }, timeoutsFor(target.provider, defaults))
    if (!response.ok) throw await upstreamError(response, adapter, target.provider.name)
    const text = await readUpstreamText(response, call, MAX_COUNT_BYTES, target.provider.name)
    let tokens: unknown
    try {
      tokens = JSON.parse(text)?.input_tokens
    } catch {}
    if (typeof tokens !== 'number' || !Number.isFinite(tokens) || tokens < 0) throw new GatewayError(502, 'The count_tokens answer has no input_tokens.', { code: 'upstream_bad_response' })
    return tokens
  } finally {
    call.release()
  }
}
