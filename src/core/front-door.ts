import { GatewayError } from '../plugin-sdk/errors.ts'
import { scrubSecrets } from '../services/known-secrets.ts'
import type { FrontDoorOperation, Target } from '../plugin-sdk/types.ts'
import type { Attempt, RequestCtx } from './context.ts'
import { SseFrameDecoder, dataOf } from './sse/decoder.ts'
import { SSE_HEADERS, firstBytes, wholeText, relayBytes, streamEnd, type OperationCall } from './upstream-body.ts'
import { spliceModel } from './wire.ts'

/**
 * Client protocols served on top of chat completions: OpenAI's Responses API and Anthropic's Messages API. A request
 * is read once into the chat body every plugin sees and every translating attempt sends; a target whose provider
 * speaks the protocol itself (`ProviderAdapter.responses` / `.messages`) gets the client's own body instead and its
 * answer is relayed with only the model name changed. The translation is one layer, over every chat adapter.
 */

export type { FrontDoorOperation }

/** The client's request, read once. */
export interface FrontDoorRequest {
  /**
   * The chat completion body: what `ctx.body` is for plugins (limits, budgets, guardrails) and what a translated
   * attempt sends. Streaming requests set `stream: true` and `stream_options.include_usage: true`.
   */
  chat: Record<string, any>
  /** What a native target gets: the client's body, with what the gateway keeps itself (a previous response) folded in. */
  native: Record<string, any>
}

/** Turns a chat stream's chunks into the protocol's events, as SSE text. */
export interface ChatStreamTranslator {
  /** One `chat.completion.chunk` object (the usage-only chunk included); returns the SSE text to send, maybe ''. */
  chunk(chunk: Record<string, any>): string
  /** The chat stream ended (`error` null) or failed mid-way: the closing events. */
  end(error: GatewayError | null): string
  /** The protocol's final object as the client now holds it (for the store), once `end` ran, failed or not. */
  result(): Record<string, any> | null
}

/** Reads a native stream's events as they pass (they are relayed unchanged but for the model name). */
export interface NativeStreamWatcher {
  event(type: string | null, data: string): void
  /**
   * What the provider reported so far, in chat completions' shape (`prompt_tokens`, `completion_tokens`,
   * `prompt_tokens_details.cached_tokens`); `completion_tokens` only once the output's count came (Messages reports
   * the input at `message_start`, the output at `message_delta`).
   */
  usage(): Record<string, any> | null
  /** Content deltas relayed so far (text, tool arguments, reasoning): a cut stream's output is estimated from them. */
  deltas(): number
  /** The provider's failure event, when the stream carried one (`response.failed`, Messages' `error`). */
  failure(): GatewayError | null
  /** The final object, when the stream carried it whole (`response.completed`); null otherwise. */
  result(): Record<string, any> | null
  /**
   * The event that ends a stream the gateway had to cut (the provider failed or went silent, the drain ran out), in
   * the protocol's words, following what was relayed (`response.failed`, Messages' `error`): never a bare reset.
   */
  failureEvent(error: GatewayError): string
}

export interface FrontDoor {
  readonly operation: FrontDoorOperation
  /** Validates the client's body (a 400 naming the param) and translates it; may read the gateway's store. */
  read(ctx: RequestCtx, body: Record<string, any>): Promise<FrontDoorRequest>
  /** A translated answer: the chat completion (model already the virtual name) as the protocol's object. */
  fromChat(ctx: RequestCtx, completion: Record<string, any>): Record<string, any>
  streamFromChat(ctx: RequestCtx): ChatStreamTranslator
  /** A native answer's usage, in chat completions' shape. */
  nativeUsage(body: Record<string, any>): Record<string, any> | null
  watchNativeStream(ctx: RequestCtx): NativeStreamWatcher
  /**
   * What the native target was not sent but its answer must show (the Responses door's `previous_response_id`: the
   * conversation went instead), spliced into the body and each event; null when there is nothing to restore.
   */
  nativeRestore?(ctx: RequestCtx): ((json: string) => string) | null
  /** A failure in the protocol's own envelope and status; absent: OpenAI's envelope as is. */
  renderError?(status: number, error: { message: string; type?: string; code?: string | null; param?: string | null }): { status: number; body: unknown }
  /** The object the client received, once, after a successful answer (native or translated): store it. */
  completed?(ctx: RequestCtx, result: Record<string, any>): void | Promise<void>
  /** `GET`/`DELETE /v1/responses/{id}` and `GET …/{id}/input_items`: answered from the gateway's store, for the key that made it. */
  stored?(ctx: RequestCtx, method: string, id: string, part: string | null, query: URLSearchParams): Promise<Response>
  /** `/v1/messages/count_tokens`: `ctx.model` is resolved and allowed; `targets` are its deployments in routing order. */
  countTokens?(ctx: RequestCtx, body: Record<string, any>, targets: Target[]): Promise<Record<string, any>>
}

/** What a front-door attempt needs from the pipeline, which owns the accounting. */
export interface FrontDoorDeps {
  maxUpstreamBodyBytes: number
  settle(ctx: RequestCtx, response: Response): Response
  report(ctx: RequestCtx, aborted: boolean): void
  usage(ctx: RequestCtx, raw: Record<string, any> | null, chunks: number): NonNullable<RequestCtx['usage']>
}

/** Native events can carry whole responses (`response.completed` with its output): far larger than a chat chunk. */
const MAX_NATIVE_EVENT_BYTES = 16 * 1024 * 1024
const encoder = new TextEncoder()

/** One attempt at a target that speaks the client's protocol: its body relayed, the model name spliced, usage read. */
export function prepareNativeCall(ctx: RequestCtx, attempt: Attempt, door: FrontDoor, native: Record<string, any>, deps: FrontDoorDeps): OperationCall {
  const name = ctx.model!.name
  const encodedName = JSON.stringify(name)
  return {
    body: native,
    async respond(response, call, lease, timeouts, started) {
      const provider = attempt.target.provider.name
      ctx.native = true
      const restore = door.nativeRestore?.(ctx) ?? null
      if (ctx.stream && response.body && (response.headers.get('content-type') ?? '').includes('text/event-stream')) {
        const { reader, first } = await firstBytes(ctx, response.body, call, lease, started, provider, true)
        const watcher = door.watchNativeStream(ctx)
        const frames = new SseFrameDecoder(MAX_NATIVE_EVENT_BYTES)
        let kept = false
        const transformed = new TransformStream<Uint8Array, Uint8Array>({
          transform(bytes, controller) {
            let out = ''
            for (const frame of frames.push(bytes)) {
              const data = dataOf(frame)
              watcher.event(frame.event, data)
              // A provider's failure may quote our key back ("Incorrect API key provided: …"), as its error answers may.
              const text = watcher.failure() ? scrubSecrets(data) : data
              const spliced = text.includes('"model"') ? spliceModel(text, name, encodedName) : text
              out += (frame.event ? `event: ${frame.event}\n` : '') + `data: ${restore ? restore(spliced) : spliced}\n\n`
            }
            const relay = () => void (out && controller.enqueue(encoder.encode(out)))
            const result = watcher.result()
            if (!result || kept || !door.completed) return relay()
            // Kept before the client reads the final event: a follow-up sent once it arrives must find it. (Only this
            // chunk waits: the others pass without a promise.)
            kept = true
            return Promise.resolve(door.completed(ctx, result)).then(relay)
          },
        })
        const end = streamEnd(ctx, attempt, lease, deps.report, () => nativeStreamUsage(ctx, watcher, deps))
        const relayed = relayBytes(reader, first, call, timeouts.idleMs, {
          sse: false,
          closing: (error) => encoder.encode(watcher.failureEvent(error)),
          // A failure the provider sent in the stream fails the request (and counts against its target) as one the
          // relay met would.
          onFinish: (error, aborted) => end(error ?? watcher.failure(), aborted),
        })
        ctx.status = 200
        return new Response(relayed.pipeThrough(transformed), { status: 200, headers: { ...SSE_HEADERS, ...ctx.headers } })
      }
      const text = await wholeText(response, call, lease, started, deps.maxUpstreamBodyBytes, provider)
      let parsed: Record<string, any>
      try {
        parsed = JSON.parse(text)
      } catch {
        throw new GatewayError(502, `The upstream provider '${provider}' returned a response that is not JSON.`, { code: 'upstream_bad_response' })
      }
      ctx.usage = deps.usage(ctx, door.nativeUsage(parsed), 0)
      ctx.priceAnswer()
      ctx.status = 200
      ctx.firstByteMs = performance.now() - ctx.startedAt
      parsed.model = name
      if (door.completed) await door.completed(ctx, parsed)
      const answer = spliceModel(text, name, encodedName)
      return deps.settle(ctx, new Response(restore ? restore(answer) : answer, { status: 200, headers: { 'content-type': 'application/json', ...ctx.headers } }))
    },
  }
}

/**
 * A stream cut before the provider's last count (the client left, the provider failed) is billed what the provider
 * reported, its input at least, and the output estimated from the deltas relayed, about a token each; it says so.
 */
function nativeStreamUsage(ctx: RequestCtx, watcher: NativeStreamWatcher, deps: FrontDoorDeps) {
  const reported = watcher.usage()
  if (!reported) return deps.usage(ctx, null, watcher.deltas())
  if (reported.completion_tokens !== undefined) return deps.usage(ctx, reported, 0)
  return { ...deps.usage(ctx, { ...reported, completion_tokens: watcher.deltas(), total_tokens: undefined }, 0), estimated: true }
}

/**
 * A response of the chat pipeline in the client's protocol: a completion translated, a chat stream turned into
 * the protocol's events as it flows, an error in the protocol's envelope. A native answer passes untouched.
 */
export async function renderFrontDoor(ctx: RequestCtx, door: FrontDoor, response: Response): Promise<Response> {
  if (ctx.native) return response
  const headers = new Headers(response.headers)
  const type = headers.get('content-type') ?? ''
  if (response.status >= 400) {
    if (!door.renderError || !type.includes('application/json')) return response
    const envelope = (await response.json().catch(() => null)) as { error?: any } | null
    const error = envelope?.error ?? { message: 'The gateway hit an internal error.', type: 'server_error' }
    const rendered = door.renderError(response.status, error)
    headers.delete('content-length')
    return new Response(JSON.stringify(rendered.body), { status: rendered.status, headers })
  }
  // What the gateway answers itself (count_tokens, stored responses) is already in the protocol's shape.
  if (ctx.operation === null || response.status !== 200 || !response.body) return response
  if (type.includes('text/event-stream')) return new Response(translateStream(ctx, door, response.body), { status: 200, headers })
  const completion = (await response.json()) as Record<string, any>
  const result = door.fromChat(ctx, completion)
  if (door.completed) await door.completed(ctx, result)
  headers.delete('content-length')
  return new Response(JSON.stringify(result), { status: 200, headers })
}

/** The chat relay's SSE, decoded chunk by chunk into the translator; pulled only as fast as the client reads. */
function translateStream(ctx: RequestCtx, door: FrontDoor, chat: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const translator = door.streamFromChat(ctx)
  const frames = new SseFrameDecoder(MAX_NATIVE_EVENT_BYTES)
  const reader = chat.getReader()
  let ended = false
  const close = async (controller: ReadableStreamDefaultController<Uint8Array>, error: GatewayError | null) => {
    if (ended) return
    ended = true
    const tail = translator.end(error)
    const result = translator.result()
    // Kept before the client reads the last event: a follow-up sent once `response.completed` arrives must find it.
    if (result && door.completed) await Promise.resolve(door.completed(ctx, result)).catch((err) => ctx.log.error({ err, requestId: ctx.id }, 'storing the response failed'))
    if (tail) controller.enqueue(encoder.encode(tail))
    controller.close()
  }
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const read = await reader.read().catch(() => ({ done: true as const, value: undefined }))
          if (read.done) return close(controller, ctx.error)
          let out = ''
          for (const frame of frames.push(read.value)) {
            const data = dataOf(frame)
            if (data === '[DONE]' || data.length === 0) continue
            const chunk = JSON.parse(data)
            if (chunk.error) {
              const e = chunk.error
              const failure = new GatewayError(ctx.error?.status ?? 502, e.message ?? 'The stream failed.', { code: e.code ?? undefined, type: e.type })
              if (out) controller.enqueue(encoder.encode(out))
              return close(controller, failure)
            }
            out += translator.chunk(chunk)
          }
          if (out) return controller.enqueue(encoder.encode(out))
        }
      },
      cancel(reason) {
        ended = true
        return reader.cancel(reason)
      },
    },
    { highWaterMark: 0 },
  )
}
