import { GatewayError, type AttemptContext, type OpenAIChunk, type SseEvent } from '../../plugin-sdk/index.ts'
import { stripAnnotations } from './response.ts'

type Kind = 'chat' | 'completions'

const OBJECT: Record<Kind, string> = { chat: 'chat.completion.chunk', completions: 'text_completion' }

/**
 * Azure streams are OpenAI chunks plus quirks, so they are passed through as objects minus those quirks (the
 * core re-serialises them and sets the virtual model):
 * - the first event is a prompt verdict with `choices: []`, empty `id`/`object`/`model` and `created: 0`: dropped;
 * - `content_filter_*` annotations on choices and `prompt_filter_results` on chunks: removed;
 * - with the asynchronous filter, verdict-only chunks (empty identity, choices without `delta`) arrive between
 *   content chunks: dropped, unless the verdict ends the choice (`finish_reason: "content_filter"`), which is
 *   re-issued as a normal final chunk of the stream;
 * - `usage: null` on every chunk (we ask for usage): removed, the client gets it only on the usage chunk;
 * - `data: {"error":…}` mid-stream: thrown, the relay sends it to the client as an error event.
 */
export const createStreamParser = (kind: Kind) => (_ctx: AttemptContext) => {
  let id = ''
  let object = OBJECT[kind]
  let created = 0
  let model = ''

  return (event: SseEvent): OpenAIChunk[] | null => {
    if (event.data === '[DONE]') return null // the relay ends the stream itself
    let chunk: any
    try {
      chunk = JSON.parse(event.data)
    } catch {
      throw new GatewayError(502, 'The upstream provider sent a stream event that is not JSON.', { code: 'upstream_bad_response' })
    }
    if (!chunk || typeof chunk !== 'object') return null
    if (chunk.error) throw streamError(chunk.error)

    const annotationOnly = !chunk.id
    if (!annotationOnly) {
      id = chunk.id
      object = chunk.object || object
      created = chunk.created || created
      model = chunk.model || model
    }
    stripAnnotations(chunk)
    if (chunk.usage === null) delete chunk.usage

    const choices: any[] = []
    for (const choice of Array.isArray(chunk.choices) ? chunk.choices : []) {
      const carriesContent = kind === 'chat' ? choice.delta !== undefined : typeof choice.text === 'string'
      if (!carriesContent) {
        if (!choice.finish_reason) continue // a verdict on text already sent
        if (kind === 'chat') choice.delta = {}
        else choice.text = ''
      }
      choices.push(choice)
    }
    if (choices.length === 0 && !chunk.usage) return null
    chunk.choices = choices

    if (annotationOnly) {
      // A verdict that ends a choice: give it the identity of the stream it belongs to.
      chunk.id = id || `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-azure-filtered`
      chunk.object = object
      chunk.created = created || Math.floor(Date.now() / 1000)
      chunk.model = model
    }
    return [chunk]
  }
}

function streamError(error: any): GatewayError {
  const message = typeof error?.message === 'string' ? error.message : 'The upstream provider reported an error mid-stream.'
  const code = typeof error?.code === 'string' && error.code ? error.code : 'upstream_error'
  // Past the status line the status only labels the error event; 502 keeps clear of the relay's 499/504 meanings.
  return new GatewayError(502, message, { type: typeof error?.type === 'string' ? error.type : 'server_error', code })
}
