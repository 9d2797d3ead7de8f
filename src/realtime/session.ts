import type { ServerWebSocket } from 'bun'
import { GatewayError } from '../plugin-sdk/errors.ts'
import type { FinishedRequest, Logger, RealtimeAudioFormat, RealtimeProtocol, RequestContext, SessionEventInfo, Target, Usage } from '../plugin-sdk/types.ts'
import type { PluginHost } from '../plugin-host/host.ts'
import { estimateTokens } from '../plugin-sdk/tokens.ts'
import { costMicros } from '../pricing/prices.ts'
import type { Metrics } from '../services/metrics.ts'
import type { SpendLedger } from '../store/ledger.ts'
import type { RequestCtx } from '../core/context.ts'
import type { AttemptLease } from '../core/router.ts'
import { InboundBridge, OutboundBridge, bridgeFor, bytesPerSecond } from './bridge.ts'
import { closeReason, errorEvent, eventId, lookAt, parse, sendableCode, type Look } from './events.ts'
import { formatsOf, maxOutputOf, setFormats } from './settings.ts'

/** What a session needs from the gateway; the service lends it. */
export interface SessionDeps {
  host: PluginHost
  ledger: SpendLedger
  metrics: Metrics
  log: Logger
  /** The pipeline's accounting for the session itself (once, when it ends): metrics, ledger row, onLog. */
  report(ctx: RequestCtx, aborted: boolean): void
  /** The session is over: forget it. */
  ended(session: RealtimeSession): void
}

export interface SessionOptions {
  /** Bytes that may wait for a slow client or provider before the session is ended. */
  maxBufferedBytes: number
  idleMs: number
  maxLengthMs: number
}

export type Frame = string | Buffer

/** Why a session ended: a metric label, and what the peers are told. */
export type EndReason =
  | 'client_closed'
  | 'provider_closed'
  | 'provider_failed'
  | 'idle'
  | 'max_length'
  | 'client_slow'
  | 'provider_slow'
  | 'budget_exhausted'
  | 'key_revoked'
  | 'shutdown'

/** Output tokens a response is assumed to produce when neither it nor the session caps them. */
export const DEFAULT_OUTPUT_RESERVE = 4096
/** Audio tokens per second, an upper bound (OpenAI counts 10/s of user audio, 20/s of the model's). */
const AUDIO_TOKENS_PER_SECOND = 20
/** OpenAI's count of the user's audio: a response cut short is billed its input at this rate, as the provider does. */
const INPUT_AUDIO_TOKENS_PER_SECOND = 10

const OPEN = 1

/** Client events the gateway looks at: governed, metered, or converted. Everything else passes untouched. */
const CLIENT_LOOKED_AT = new Set(['session.update', 'response.create', 'input_audio_buffer.append', 'input_audio_buffer.commit', 'input_audio_buffer.clear', 'conversation.item.create'])
const PROVIDER_LOOKED_AT = new Set(['session.created', 'session.updated', 'response.created', 'response.done', 'error'])
/** And, while the client's output audio is converted, the audio deltas and their end. */
const PROVIDER_AUDIO = new Set(['response.output_audio.delta', 'response.audio.delta', 'response.output_audio.done', 'response.audio.done'])
/** The output a response relays, metered for a response the session's end cuts short (it never reports its usage). */
const OUTPUT_AUDIO = new Set(['response.output_audio.delta', 'response.audio.delta'])
const OUTPUT_TEXT = new Set(['response.output_text.delta', 'response.text.delta', 'response.output_audio_transcript.delta', 'response.audio_transcript.delta'])

/** A session event's verdict as a promise, or undefined when every plugin admitted it synchronously. */
const pending = (verdict: Response | undefined | Promise<Response | undefined>) => (verdict instanceof Promise ? verdict : verdict ? Promise.resolve(verdict) : undefined)

/** One response of a session, as the plugins see it: a request context of its own (admission state, usage). */
class ResponseCtx implements RequestContext {
  readonly endpoint = 'realtime' as const
  readonly operation = 'realtime' as const
  readonly startedAt = performance.now()
  readonly shared: Record<string, unknown> = {}
  readonly sentJson = null
  readonly principal
  readonly model
  readonly request
  readonly signal
  readonly log
  /** The response id the provider gave it (response.created). */
  responseId: string | null = null
  /**
   * The `event_id` of its response.create, which the provider's error event names when it refuses it: the client's,
   * or one the gateway gave a create without one (`named`), so that such a refusal is told from any other error.
   */
  clientEventId: string | null = null
  named = false
  firstByteMs: number | null = null

  constructor(
    readonly id: string,
    parent: RequestCtx,
    public body: Record<string, any>,
    readonly session: SessionEventInfo,
    /** Its input as the provider will count it, audio apart: what it is billed if it ends before the provider says. */
    readonly input: Usage,
  ) {
    this.principal = parent.principal
    this.model = parent.model
    this.request = parent.request
    this.signal = parent.signal
    this.log = parent.log
  }

  setHeader() {} // a WebSocket session has no more headers to send
  onPriced() {}
}

/**
 * One realtime session: the client's socket (Bun's server WebSocket) and the provider's (Bun's WebSocket client),
 * frames relayed as they come. The gateway looks at a frame's `type` only (lookAt) and parses the few events it
 * governs: `response.create` is admitted by the plugins' `onSessionEvent` before it is forwarded, `response.done`
 * becomes a ledger row, session events get the virtual model name. What waits for a slow peer is bounded.
 */
export class RealtimeSession {
  private client: ServerWebSocket<{ session: RealtimeSession }> | null = null
  /** Frames for the client before its socket opened (the provider speaks first: session.created). */
  private early: Frame[] | null = []
  /** Client frames held, in order, while a response.create waits for its admission. */
  private held: Frame[] | null = null
  private heldBytes = 0
  private ended = false
  readonly startedAt = performance.now()
  lastActivity = performance.now()
  /** Traffic not yet added to the metrics (the service's ticker reports it in batches). */
  framesUp = 0
  bytesUp = 0
  framesDown = 0
  bytesDown = 0

  /** What the client's audio is in, and the conversions its provider needs. */
  private clientIn: RealtimeAudioFormat = 'pcm16'
  private clientOut: RealtimeAudioFormat = 'pcm16'
  private inbound: InboundBridge | null = null
  private outbound: OutboundBridge | null = null
  /** The last output audio delta's envelope, to carry the converter's tail before the audio's end. */
  private lastDelta: Record<string, any> | null = null

  /** Worst-case bookkeeping: tokens of the conversation so far, and what was added since the last response. */
  private conversationTokens: number
  /** Of those, audio (the user's and the model's, read again as input by the next response). */
  private conversationAudioTokens = 0
  private audioChars = 0
  private textBytes = 0
  private sessionMaxOutput: number | null = null
  /** Output relayed since the last response.done: base64 characters of the provider's audio, tokens of text. */
  private outputAudioChars = 0
  private outputTextTokens = 0
  private responses = 0
  /** Admitted response.create events waiting for their response.created, in order. */
  private readonly admitted: ResponseCtx[] = []
  private readonly running = new Map<string, ResponseCtx>()

  constructor(
    readonly ctx: RequestCtx,
    private readonly target: Target,
    private readonly upstream: WebSocket,
    readonly protocol: RealtimeProtocol,
    private readonly providerFormats: readonly RealtimeAudioFormat[],
    private readonly lease: AttemptLease,
    private readonly deps: SessionDeps,
    readonly options: SessionOptions,
    initial: Record<string, any> | null,
  ) {
    this.conversationTokens = initial ? Buffer.byteLength(JSON.stringify(initial)) : 0
    upstream.binaryType = 'nodebuffer'
    upstream.onmessage = (event) => this.fromProvider(event.data as Frame)
    upstream.onclose = (event) => this.providerClosed(event.code, event.reason)
    upstream.onerror = () => {} // a close event follows with what happened
    if (initial) {
      // The settings made ahead (POST /sessions) are the session's first update, formats bridged as any other.
      this.clientUpdate(JSON.stringify({ type: 'session.update', session: initial }), { type: 'session.update' })
    }
  }

  get keyId() {
    return this.ctx.principal!.keyId
  }

  // Client side ------------------------------------------------------------------------------------------------

  opened(ws: ServerWebSocket<{ session: RealtimeSession }>) {
    this.client = ws
    const early = this.early!
    this.early = null
    for (const frame of early) this.toClient(frame)
    if (this.ended) ws.close(1011, 'session ended')
  }

  fromClient(frame: Frame) {
    if (this.ended) return
    this.lastActivity = performance.now()
    if (this.held) return this.hold(frame)
    this.processClient(frame)
  }

  private hold(frame: Frame) {
    this.held!.push(frame)
    this.heldBytes += frame.length
    if (this.heldBytes > this.options.maxBufferedBytes) this.end('provider_slow')
  }

  private processClient(frame: Frame) {
    this.framesUp++
    this.bytesUp += frame.length
    if (typeof frame !== 'string') return this.toProvider(frame)
    const look = lookAt(frame)
    if (look.type === null || !CLIENT_LOOKED_AT.has(look.type)) return this.toProvider(frame)
    switch (look.type) {
      case 'input_audio_buffer.append':
        this.audioChars += frame.length
        return this.toProvider(this.inbound ? this.convertAppend(frame, look) : frame)
      case 'response.create':
        return this.govern(frame, look)
      case 'session.update':
        return this.clientUpdate(frame, look)
      case 'conversation.item.create':
        this.textBytes += frame.length
        return this.toProvider(this.inbound ? this.convertItem(frame, look) : frame)
      case 'input_audio_buffer.commit':
        // The converter holds a few ms back: they belong to this turn.
        if (this.inbound) this.toProvider(JSON.stringify({ type: 'input_audio_buffer.append', audio: this.inbound.flush() }))
        return this.toProvider(frame)
      case 'input_audio_buffer.clear':
        this.inbound?.flush()
        return this.toProvider(frame)
    }
  }

  /**
   * The client's settings: the model stays the one routed to (a client cannot switch to a dearer one mid-session),
   * G.711 the provider lacks becomes pcm16 (converted both ways), and the output cap is noted for the worst case.
   */
  private clientUpdate(frame: string, look: Look) {
    const event = parse(frame, look)
    const session = event?.session
    if (!session || typeof session !== 'object') return this.toProvider(frame)
    let changed = false
    if ('model' in session) {
      delete session.model
      changed = true
    }
    if (typeof session.instructions === 'string') this.textBytes += session.instructions.length
    this.sessionMaxOutput = maxOutputOf(session, this.protocol) ?? this.sessionMaxOutput
    const formats = formatsOf(session, this.protocol)
    if (formats.input) {
      this.clientIn = formats.input
      const bridge = bridgeFor(formats.input, this.providerFormats)
      this.inbound = bridge ? new InboundBridge(bridge) : null
      if (bridge) changed = true
    }
    if (formats.output) {
      this.clientOut = formats.output
      const bridge = bridgeFor(formats.output, this.providerFormats)
      this.outbound = bridge ? new OutboundBridge(bridge) : null
      if (bridge) changed = true
    }
    if (this.inbound || this.outbound) setFormats(session, this.protocol, { input: this.inbound ? 'pcm16' : undefined, output: this.outbound ? 'pcm16' : undefined })
    this.toProvider(changed ? JSON.stringify(event) : frame)
  }

  private convertAppend(frame: string, look: Look): string {
    const event = parse(frame, look)
    if (!event || typeof event.audio !== 'string') return frame
    event.audio = this.inbound!.convert(event.audio)
    return JSON.stringify(event)
  }

  /** A conversation item carrying the client's audio (`input_audio` content) is converted like an append. */
  private convertItem(frame: string, look: Look): string {
    const event = parse(frame, look)
    const content = event?.item?.content
    if (!Array.isArray(content)) return frame
    let changed = false
    for (const part of content) {
      if (part?.type === 'input_audio' && typeof part.audio === 'string') {
        // Each item is a whole recording: a fresh converter, flushed.
        const bridge = new InboundBridge(this.inbound!.from)
        part.audio = Buffer.concat([Buffer.from(bridge.convert(part.audio), 'base64'), Buffer.from(bridge.flush(), 'base64')]).toString('base64')
        changed = true
      }
    }
    return changed ? JSON.stringify(event) : frame
  }

  private toProvider(frame: Frame) {
    if (this.ended) return
    if (this.upstream.bufferedAmount > this.options.maxBufferedBytes) return this.end('provider_slow')
    this.upstream.send(frame)
  }

  // Governance -------------------------------------------------------------------------------------------------

  /** What the next response may cost at worst: the conversation so far, what was added since, and its output cap. */
  private responseContext(event: string, params: Record<string, any> | null): ResponseCtx {
    const audioSeconds = (this.audioChars * 0.75) / bytesPerSecond(this.clientIn)
    const input = this.conversationTokens + Math.ceil(audioSeconds * AUDIO_TOKENS_PER_SECOND) + this.textBytes
    const asked = params?.max_output_tokens ?? params?.max_response_output_tokens
    const output = typeof asked === 'number' && asked > 0 ? asked : (this.sessionMaxOutput ?? DEFAULT_OUTPUT_RESERVE)
    // Every token priced as audio, the dearer unit: a bound from above, settled to the reported usage.
    const worstCase: Usage = { prompt_tokens: input, completion_tokens: output, total_tokens: input + output, prompt_audio_tokens: input, completion_audio_tokens: output }
    const audio = this.conversationAudioTokens + Math.ceil(audioSeconds * INPUT_AUDIO_TOKENS_PER_SECOND)
    const prompt = this.conversationTokens + Math.ceil(audioSeconds * INPUT_AUDIO_TOKENS_PER_SECOND) + this.textBytes
    const expected: Usage = { prompt_tokens: prompt, completion_tokens: 0, total_tokens: prompt, prompt_audio_tokens: Math.min(audio, prompt), estimated: true }
    const body = { ...this.ctx.body, model: this.ctx.model!.name, max_output_tokens: output }
    return new ResponseCtx(`${this.ctx.id}.${++this.responses}`, this.ctx, body, { sessionId: this.ctx.id, event, worstCase }, expected)
  }

  /** A response.create, forwarded only once the plugins admit it; client frames after it wait their turn. */
  private govern(frame: string, look: Look) {
    const event = parse(frame, look)
    const child = this.responseContext('response.create', event?.response ?? null)
    if (typeof event?.event_id === 'string') child.clientEventId = event.event_id
    else if (event) {
      child.clientEventId = eventId()
      child.named = true
      frame = JSON.stringify({ ...event, event_id: child.clientEventId })
    }
    let verdict: Promise<Response | undefined> | undefined
    try {
      verdict = pending(this.deps.host.run('onSessionEvent', child))
    } catch (error) {
      return this.refused(child, error, event?.event_id)
    }
    if (!verdict) {
      this.admitted.push(child)
      return this.toProvider(frame)
    }
    this.held = []
    verdict.then(
      (response) => {
        if (response) throw new GatewayError(response.status >= 400 ? response.status : 403, 'A plugin refused this response.', { code: 'response_refused' })
        if (this.ended) return this.settle(child, null, true)
        this.admitted.push(child)
        this.toProvider(frame)
      },
    ).catch((error) => this.refused(child, error, event?.event_id)).finally(() => this.release())
  }

  /** Frames held behind an admission go on, in order, until one starts another admission. */
  private release() {
    const held = this.held
    this.held = null
    this.heldBytes = 0
    if (!held) return
    for (let i = 0; i < held.length; i++) {
      if (this.ended) return
      if (this.held) {
        // Another response.create is being admitted: the rest waits behind it.
        const rest = held.slice(i)
        this.held = rest.concat(this.held as Frame[])
        this.heldBytes = this.held.reduce((n, f) => n + f.length, 0)
        return
      }
      this.processClient(held[i]!)
    }
  }

  /** The client hears why, in an error event; a budget that is gone ends the session. */
  private refused(child: ResponseCtx, error: unknown, clientEventId: string | undefined) {
    const failure = GatewayError.is(error) ? error : new GatewayError(503, 'The response could not be admitted.', { code: 'plugin_failure' })
    if (!GatewayError.is(error)) this.ctx.log.error({ err: error, requestId: child.id }, 'realtime response admission failed')
    this.report(child, { status: failure.status, error: failure, usage: null, target: null, aborted: false })
    if (this.ended) return
    this.toClient(errorEvent(failure, clientEventId))
    if (failure.code === 'insufficient_quota') this.end('budget_exhausted', failure)
  }

  // Provider side -----------------------------------------------------------------------------------------------

  private fromProvider(frame: Frame) {
    if (this.ended) return
    this.lastActivity = performance.now()
    if (typeof frame === 'string') {
      const look = lookAt(frame)
      const type = look.type
      if (type !== null) this.meterOutput(type, frame, look)
      if (type !== null && (PROVIDER_LOOKED_AT.has(type) || (this.outbound && PROVIDER_AUDIO.has(type)))) {
        frame = this.providerEvent(type, frame, look)
        if (!frame) return
      }
    }
    this.toClient(frame)
  }

  private providerEvent(type: string, frame: string, look: Look): string {
    const event = parse(frame, look)
    if (!event) return frame
    switch (type) {
      case 'session.created':
      case 'session.updated': {
        const session = event.session
        if (!session || typeof session !== 'object') return frame
        // The client sees the name it asked for, and the formats it speaks.
        if ('model' in session) session.model = this.ctx.model!.name
        setFormats(session, this.protocol, { input: this.inbound ? this.clientIn : undefined, output: this.outbound ? this.clientOut : undefined })
        return JSON.stringify(event)
      }
      case 'response.created':
        this.started(event.response?.id)
        return frame
      case 'response.done':
        this.done(event.response)
        return frame
      case 'error':
        return this.rejected(event, frame)
      case 'response.output_audio.delta':
      case 'response.audio.delta':
        if (typeof event.delta !== 'string') return frame
        event.delta = this.outbound!.convert(event.delta)
        this.lastDelta = event
        return JSON.stringify(event)
      default: {
        // The audio's end: what the converter holds goes first, in a delta like the last one.
        const tail = this.outbound!.flush()
        if (this.lastDelta && tail) this.toClient(JSON.stringify({ ...this.lastDelta, delta: tail }))
        this.lastDelta = null
        return frame
      }
    }
  }

  /**
   * An output delta's size. Audio deltas are base64, which holds no quote: their length is found without parsing
   * frames of several KB, tens a second. Text deltas are small and may hold escapes: parsed.
   */
  private meterOutput(type: string, frame: string, look: Look) {
    if (OUTPUT_AUDIO.has(type)) {
      const at = frame.indexOf('"delta":"')
      if (at !== -1) this.outputAudioChars += Math.max(0, frame.indexOf('"', at + 9) - (at + 9))
    } else if (OUTPUT_TEXT.has(type)) {
      const delta = parse(frame, look)?.delta
      // Providers stream text about a token a delta.
      if (typeof delta === 'string') this.outputTextTokens += estimateTokens(delta)
    }
  }

  /** response.created: the oldest admitted response.create, or one the provider started itself (voice activity). */
  private started(id: unknown) {
    if (typeof id !== 'string') return
    const child = this.admitted.shift()
    if (child) {
      child.responseId = id
      child.firstByteMs = performance.now() - child.startedAt
      this.running.set(id, child)
      return
    }
    // Admitted after the fact: a refusal cancels it at once and the client hears why.
    const late = this.responseContext('response.created', null)
    late.responseId = id
    this.running.set(id, late)
    let verdict: Promise<Response | undefined> | undefined
    try {
      verdict = pending(this.deps.host.run('onSessionEvent', late))
    } catch (error) {
      return this.cancel(late, error)
    }
    verdict?.then((response) => {
      if (response) throw new GatewayError(403, 'A plugin refused this response.', { code: 'response_refused' })
    }).catch((error) => this.cancel(late, error))
  }

  /**
   * An error event for a response.create the provider refused: it never runs, so it costs nothing (its hold is
   * released), and the next response.created belongs to the next create. The error names the create by its
   * event_id (the gateway names those the client did not: the client still sees none); unnamed (a provider that
   * does not say), a refusal because a response is already running is the oldest create waiting.
   */
  private rejected(event: Record<string, any>, frame: string): string {
    const error = event.error
    const named = error?.event_id
    const at =
      typeof named === 'string'
        ? this.admitted.findIndex((child) => child.clientEventId === named)
        : error?.code === 'conversation_already_has_active_response' && this.admitted.length > 0
          ? 0
          : -1
    if (at === -1) return frame
    const [child] = this.admitted.splice(at, 1)
    const failure = new GatewayError(400, typeof error?.message === 'string' ? error.message : 'The provider refused this response.', {
      code: typeof error?.code === 'string' ? error.code : 'response_refused',
    })
    this.report(child!, { status: failure.status, error: failure, usage: null, target: null, aborted: false })
    return child!.named ? JSON.stringify({ ...event, error: { ...error, event_id: null } }) : frame
  }

  private cancel(child: ResponseCtx, error: unknown) {
    if (this.ended) return
    this.toProvider(JSON.stringify({ type: 'response.cancel', response_id: child.responseId }))
    const failure = GatewayError.is(error) ? error : new GatewayError(503, 'The response could not be admitted.', { code: 'plugin_failure' })
    this.toClient(errorEvent(failure))
    if (failure.code === 'insufficient_quota') this.end('budget_exhausted', failure)
  }

  /** response.done: its usage becomes the response's ledger row; the conversation's size is known again. */
  private done(response: Record<string, any> | undefined) {
    const id = response?.id
    const child = (typeof id === 'string' && this.running.get(id)) || this.responseContext('response.done', null)
    if (typeof id === 'string') this.running.delete(id)
    const raw = response?.usage
    const usage = raw && typeof raw === 'object' ? usageOf(raw) : null
    if (usage) {
      this.conversationTokens = usage.total_tokens
      this.conversationAudioTokens = (usage.prompt_audio_tokens ?? 0) + (usage.completion_audio_tokens ?? 0)
    }
    this.audioChars = 0
    this.textBytes = 0
    this.outputAudioChars = 0
    this.outputTextTokens = 0
    this.settle(child, usage, response?.status === 'cancelled')
  }

  /**
   * A response ends: priced from its usage, or, when the provider never said (the session ended first), estimated:
   * its input as the provider counts it (audio priced as audio), and the output it relayed (`relayed`: that response
   * is billed what the client received).
   */
  private settle(child: ResponseCtx, usage: Usage | null, aborted: boolean, relayed = false) {
    this.report(child, { status: 200, error: null, usage: usage ?? this.estimate(child, relayed), target: this.target, aborted })
  }

  private estimate(child: ResponseCtx, relayed: boolean): Usage {
    const input = child.input
    if (!relayed) return input
    const providerOut = this.outbound ? 'pcm16' : this.clientOut
    const audio = Math.ceil(((this.outputAudioChars * 0.75) / bytesPerSecond(providerOut)) * AUDIO_TOKENS_PER_SECOND)
    const completion = audio + this.outputTextTokens
    const usage: Usage = { ...input, completion_tokens: completion, total_tokens: input.prompt_tokens + completion }
    if (audio) usage.completion_audio_tokens = audio
    return usage
  }

  private report(child: ResponseCtx, outcome: { status: number; error: GatewayError | null; usage: Usage | null; target: Target | null; aborted: boolean }) {
    const f: FinishedRequest = {
      ctx: child,
      status: outcome.status,
      error: outcome.error,
      aborted: outcome.aborted,
      stream: true,
      usage: outcome.usage,
      target: outcome.target,
      attempts: outcome.target ? 1 : 0,
      costMicros: outcome.target && outcome.usage ? costMicros(outcome.target.price, outcome.usage) : 0,
      durationMs: performance.now() - child.startedAt,
      firstByteMs: child.firstByteMs,
    }
    for (const step of [() => this.deps.metrics.record(f), () => this.deps.ledger.record(f), () => this.deps.host.log(f)]) {
      try {
        step()
      } catch (err) {
        this.ctx.log.error({ err, requestId: child.id }, 'realtime response accounting failed')
      }
    }
  }

  private toClient(frame: Frame) {
    if (this.ended) return
    const ws = this.client
    if (!ws) {
      this.early!.push(frame)
      return
    }
    // A client that does not read: its backlog is bounded, then the session ends (the error event and the close
    // frame still queue behind it, for a client that comes back to reading).
    if (ws.getBufferedAmount() > this.options.maxBufferedBytes) return this.end('client_slow')
    if (ws.send(frame) === 0) return this.end('client_slow')
    this.framesDown++
    this.bytesDown += frame.length
  }

  // Ends ----------------------------------------------------------------------------------------------------------

  clientClosed(code: number, reason: string) {
    this.end('client_closed', null, { code, reason })
  }

  private providerClosed(code: number, reason: string) {
    if (this.ended) return
    if (code === 1000 || code === 1001 || (sendableCode(code) && code !== 1011)) this.end('provider_closed', null, { code, reason })
    else this.end('provider_failed', new GatewayError(502, `The provider closed the session unexpectedly (code ${code}${reason ? `: ${reason}` : ''}).`, { code: 'upstream_closed' }))
  }

  /**
   * The session is over, for `reason`: the other side is closed at once (with the code and reason the closing side
   * gave, where the protocol lets them be sent on), what is still running is settled, the session is accounted.
   */
  end(reason: EndReason, error: GatewayError | null = null, closed?: { code: number; reason: string }) {
    if (this.ended) return
    const { code, text, event } = farewell(reason, error, closed, this.options)
    const client = this.client
    if (event && client && client.readyState === OPEN) client.send(event)
    this.ended = true
    if (reason !== 'client_closed' && client && client.readyState === OPEN) client.close(code, closeReason(text))
    if (reason !== 'provider_closed' && reason !== 'provider_failed' && this.upstream.readyState === OPEN) {
      this.upstream.close(reason === 'client_closed' && closed && sendableCode(closed.code) ? closed.code : 1000, closeReason(reason === 'client_closed' ? (closed?.reason ?? '') : text))
    } else if (this.upstream.readyState !== WebSocket.CLOSED) this.upstream.close()
    if (reason === 'idle' || reason === 'max_length' || reason === 'client_slow' || reason === 'provider_slow') {
      this.ctx.log.warn({ requestId: this.ctx.id, reason, keyId: this.keyId }, 'realtime session ended')
    }
    // What was relayed since the last response.done belongs to the responses running: the first is billed it.
    for (const child of this.admitted) this.settle(child, null, true)
    let relayed = true
    for (const child of this.running.values()) {
      this.settle(child, null, true, relayed)
      relayed = false
    }
    this.admitted.length = 0
    this.running.clear()
    this.lease.release()
    if (reason === 'provider_failed') this.lease.failed(error!)
    this.deps.ended(this)
    this.deps.metrics.realtimeEnded((performance.now() - this.startedAt) / 1000, reason)
    const ctx = this.ctx
    ctx.status = 101
    // Tokens and cost are on the responses' rows; the session's own row says that it happened and how long it lasted.
    ctx.usage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }
    if (error) ctx.error = error
    this.deps.report(ctx, false)
  }

  /** For the service's ticker: the socket to force shut when a closing client never reads its close frame. */
  get clientSocket() {
    return this.client
  }
}

/** What each end tells the peers: the close code and reason, and an error event first where something went wrong. */
function farewell(reason: EndReason, error: GatewayError | null, closed: { code: number; reason: string } | undefined, options: SessionOptions) {
  const mib = (options.maxBufferedBytes / 1048576).toFixed(1)
  const notice = (code: string, message: string, type = 'invalid_request_error') => errorEvent({ type, code, message })
  switch (reason) {
    case 'client_closed':
      return { code: 1000, text: '', event: null }
    case 'provider_closed':
      return { code: sendableCode(closed!.code) ? closed!.code : 1000, text: closed!.reason, event: null }
    case 'provider_failed':
      return { code: 1011, text: 'provider connection lost', event: errorEvent(error!) }
    case 'idle':
      return { code: 1000, text: 'idle timeout', event: notice('session_idle_timeout', `The session was idle for ${Math.round(options.idleMs / 1000)} s and was closed.`) }
    case 'max_length':
      return { code: 1000, text: 'maximum session length reached', event: notice('session_expired', `The session reached its maximum length of ${Math.round(options.maxLengthMs / 1000)} s.`) }
    case 'client_slow':
      return { code: 1008, text: `client too slow: more than ${mib} MiB waiting`, event: notice('client_too_slow', `The client read too slowly: more than ${mib} MiB waited for it.`) }
    case 'provider_slow':
      return { code: 1011, text: `provider too slow: more than ${mib} MiB waiting`, event: notice('upstream_too_slow', `The provider read too slowly: more than ${mib} MiB waited for it.`, 'server_error') }
    case 'budget_exhausted':
      return { code: 1008, text: 'budget exhausted', event: null } // the refusal's error event was sent
    case 'key_revoked':
      return { code: 1008, text: 'API key disabled or deleted', event: notice('invalid_api_key', 'The API key of this session was disabled or deleted.', 'authentication_error') }
    case 'shutdown':
      return { code: 1001, text: 'server shutting down', event: null }
  }
}

/** A realtime response's usage (OpenAI's shape) in the gateway's units; cached audio is priced as cached, not audio. */
export function usageOf(raw: Record<string, any>): Usage | null {
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.round(v) : 0)
  if (typeof raw.input_tokens !== 'number' && typeof raw.output_tokens !== 'number') return null
  const input = n(raw.input_tokens)
  const output = n(raw.output_tokens)
  const inDetails = raw.input_token_details ?? {}
  const cached = n(inDetails.cached_tokens)
  const cachedAudio = n(inDetails.cached_tokens_details?.audio_tokens)
  const usage: Usage = { prompt_tokens: input, completion_tokens: output, total_tokens: n(raw.total_tokens) || input + output }
  if (cached) usage.cached_tokens = Math.min(cached, input)
  const audioIn = Math.max(0, n(inDetails.audio_tokens) - cachedAudio)
  const audioOut = n(raw.output_token_details?.audio_tokens)
  if (audioIn) usage.prompt_audio_tokens = audioIn
  if (audioOut) usage.completion_audio_tokens = audioOut
  return usage
}
