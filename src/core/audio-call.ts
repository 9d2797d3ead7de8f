import { GatewayError } from '../plugin-sdk/errors.ts'
import { speechUsage, transcriptionUsage } from '../plugin-sdk/audio-usage.ts'
import type { AudioUpload, SpeechAdapter, Transcoder, TranscriptionAdapter, Transcript } from '../plugin-sdk/types.ts'
import { byteRateOf, planSpeech, renderTranscript, secondsOf, SPEECH_MIME, sseEvent, transcriptEvents, transcriptOf, uploadFor, PCM_RATE } from './audio.ts'
import type { Attempt, RequestCtx } from './context.ts'
import type { AttemptLease } from './router.ts'
import type { Timeouts, UpstreamCall } from './upstream.ts'
import { SSE_HEADERS, firstBytes, relayBytes, sseEventWatcher, streamEnd, wholeText, type OperationCall } from './upstream-body.ts'

/** What an audio attempt needs from the pipeline, which owns the accounting. */
export interface AudioCallDeps {
  transcoder: Transcoder | null
  maxUpstreamBodyBytes: number
  /** A complete response: record it (status, metrics, ledger, onLog) and hand it back. */
  settle(ctx: RequestCtx, response: Response): Response
  /** A streamed response ended (last byte, failure or abort): account for it, exactly once. */
  report(ctx: RequestCtx, aborted: boolean): void
}

/** Uploads already converted for a target spec, per request: a fallback to a like target converts nothing twice. */
const conversions = new WeakMap<RequestCtx, Map<string, AudioUpload>>()

export async function prepareAudioCall(ctx: RequestCtx, attempt: Attempt, adapter: TranscriptionAdapter | SpeechAdapter, deps: AudioCallDeps): Promise<OperationCall> {
  return ctx.operation === 'speech'
    ? prepareSpeech(ctx, attempt, adapter as SpeechAdapter, deps)
    : prepareTranscription(ctx, attempt, adapter as TranscriptionAdapter, deps)
}

async function prepareTranscription(ctx: RequestCtx, attempt: Attempt, adapter: TranscriptionAdapter, deps: AudioCallDeps): Promise<OperationCall> {
  const body = ctx.body!
  const original = body.file as AudioUpload
  const provider = attempt.target.provider
  const abilities = adapter.abilities(provider)
  let converted = conversions.get(ctx)
  if (!converted) conversions.set(ctx, (converted = new Map()))
  const upload = await uploadFor(original, abilities, provider, deps.transcoder, ctx.signal, converted, (fn) => ctx.onEnd(fn))
  const wanted: string = body.response_format ?? 'json'
  const translating = !!adapter.parseTranscript
  // Formats the provider makes go as they are; others are rendered from the fullest transcript it gives. Plain
  // text is rendered from JSON, which every model gives: the provider's text carries no usage, its JSON does.
  const native = !translating && wanted !== 'text' && abilities.transcriptFormats.includes(wanted)
  const asked = native ? wanted : wanted !== 'text' && abilities.transcriptFormats.includes('verbose_json') ? 'verbose_json' : 'json'
  const streamUp = ctx.stream && !translating && abilities.streamTranscripts
  const upstreamBody: Record<string, any> = { ...body, file: upload, response_format: asked }
  if (streamUp) upstreamBody.stream = true
  else delete upstreamBody.stream

  return {
    body: upstreamBody,
    abandoned: () => transcriptionUsage(original, body, null),
    async respond(response, call, lease, timeouts, started) {
      const type = response.headers.get('content-type') ?? ''
      const name = provider.name
      if (streamUp && type.includes('text/event-stream') && response.body) {
        const { reader, first } = await firstBytes(ctx, response.body, call, lease, started, name, true)
        let reported: any = null
        const scan = sseEventWatcher('transcript.text.done', (event) => (reported = event.usage))
        const stream = relayBytes(reader, first, call, timeouts.idleMs, {
          sse: false,
          onBytes: scan,
          onFinish: streamEnd(ctx, attempt, lease, deps.report, () => transcriptionUsage(original, body, reported)),
        })
        ctx.status = 200
        return new Response(stream, { status: 200, headers: { ...SSE_HEADERS, ...ctx.headers } })
      }
      const text = await wholeText(response, call, lease, started, deps.maxUpstreamBodyBytes, name)
      let transcript: Transcript
      if (translating || type.includes('json')) {
        let parsed: unknown
        try {
          parsed = JSON.parse(text)
        } catch {
          throw new GatewayError(502, `The upstream provider '${name}' returned a transcript that is not JSON.`, { code: 'upstream_bad_response' })
        }
        transcript = translating ? adapter.parseTranscript!(parsed, attempt) : transcriptOf(parsed)
      } else transcript = { text: text.replace(/\n$/, '') }
      // A verbose transcript's duration is the provider's count of the audio, as a duration usage is.
      const reported = transcript.usage ?? (typeof transcript.duration === 'number' ? { type: 'duration', seconds: transcript.duration } : null)
      ctx.usage = transcriptionUsage(original, body, reported)
      ctx.priceAnswer()
      ctx.firstByteMs = performance.now() - ctx.startedAt
      if (ctx.stream) {
        const events = transcriptEvents(transcript)
        return deps.settle(ctx, new Response(new Blob(events), { status: 200, headers: { ...SSE_HEADERS, ...ctx.headers } }))
      }
      if (!native) {
        // Rendered here: a provider that said nothing of the audio's length or language leaves what we know of them.
        transcript.duration ??= original.durationSeconds ?? undefined
        transcript.language ??= ctx.operation === 'translations' ? 'english' : typeof body.language === 'string' ? body.language : 'unknown'
        const words = [body.timestamp_granularities].flat().includes('word')
        if (wanted === 'verbose_json' && words && !transcript.words) {
          const dropped = ctx.headers['x-conduit-dropped-params']
          ctx.headers['x-conduit-dropped-params'] = dropped ? `${dropped},timestamp_granularities` : 'timestamp_granularities'
        }
      }
      const out = native ? { body: text, contentType: type || 'application/json' } : renderTranscript(transcript, wanted, ctx.operation!)
      return deps.settle(ctx, new Response(out.body, { status: 200, headers: { 'content-type': out.contentType, ...ctx.headers } }))
    },
  }
}

async function prepareSpeech(ctx: RequestCtx, attempt: Attempt, adapter: SpeechAdapter, deps: AudioCallDeps): Promise<OperationCall> {
  const body = ctx.body!
  const provider = attempt.target.provider
  const plan = planSpeech(body.response_format ?? 'mp3', adapter.abilities(provider), provider, deps.transcoder)
  const sse = body.stream_format === 'sse'
  const upstreamBody: Record<string, any> = { ...body, response_format: plan.source.format }
  delete upstreamBody.stream_format

  return {
    body: upstreamBody,
    abandoned: () => speechUsage(body, null),
    async respond(response, call, lease, timeouts, started) {
      if (!response.body) throw new GatewayError(502, `The upstream provider '${provider.name}' returned no audio.`, { code: 'upstream_empty_stream' })
      const { reader, first } = await firstBytes(ctx, response.body, call, lease, started, provider.name)
      let sourceBytes = 0
      let outputBytes = 0
      // A WAV's or MP3's length follows from its size once its first bytes (a header, frames) say the byte rate.
      const rate = byteRateOf(plan.source.format, first)
      const usage = () => speechUsage(body, secondsOf(plan.source, sourceBytes, rate) ?? secondsOf(plan.output, outputBytes))
      const doneUsage = () => {
        const u = usage()
        return { input_tokens: u.prompt_tokens, output_tokens: u.completion_tokens, total_tokens: u.total_tokens }
      }
      const finish = streamEnd(ctx, attempt, lease, deps.report, usage)
      let audio: ReadableStream<Uint8Array>
      if (plan.convert) {
        const source = relayBytes(reader, first, call, timeouts.idleMs, { sse: false, onBytes: (b) => (sourceBytes += b.length) })
        const converted = deps.transcoder!.convert(source, plan.source, plan.output, ctx.signal).getReader()
        // The first converted bytes decide the status: a busy or failing transcoder is still an HTTP error here.
        let start: Awaited<ReturnType<typeof converted.read>>
        try {
          start = await converted.read()
        } catch (error) {
          source.cancel().catch(() => {}) // stops the upstream too
          throw GatewayError.is(error) ? error : new GatewayError(502, 'The audio conversion failed.', { code: 'transcoding_failed' })
        }
        if (start.done) throw new GatewayError(502, `The upstream provider '${provider.name}' returned no audio.`, { code: 'upstream_empty_stream' })
        audio = relayBytes(converted, start.value, call, 0, { sse, onBytes: (b) => (outputBytes += b.length), onFinish: finish, doneUsage })
      } else {
        audio = relayBytes(reader, first, call, timeouts.idleMs, { sse, onBytes: (b) => (sourceBytes += b.length), onFinish: finish, doneUsage })
      }
      const headers: Record<string, string> = sse ? { ...SSE_HEADERS } : { 'content-type': SPEECH_MIME[plan.output.format] ?? 'application/octet-stream' }
      if (plan.output.format === 'pcm') headers['x-conduit-audio-sample-rate'] = String(plan.output.sampleRate ?? PCM_RATE)
      ctx.status = 200
      return new Response(audio, { status: 200, headers: { ...headers, ...ctx.headers } })
    },
  }
}
