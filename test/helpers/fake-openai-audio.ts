import { audioDuration, chunkedBody, Gate, synthesize, timedWords, type Encoding, type SpeechRecord } from './fake-audio-common.ts'

/**
 * OpenAI's audio API as a test upstream, on OpenAI's paths (`/v1/audio/…`, `Authorization: Bearer`) and on Azure's
 * deployment paths (`/openai/deployments/{d}/audio/…?api-version=`, `api-key`), speaking the real wire formats:
 *
 * - speech: real espeak-ng speech in the requested format with OpenAI's content types, sent in chunks with pauses;
 *   `stream_format: "sse"` answers `speech.audio.delta`/`speech.audio.done` events (400 for tts-1, as OpenAI does);
 * - transcriptions/translations: multipart, the file decoded (ffprobe) and refused when it is not audio, as
 *   OpenAI does (`Invalid file format.`) and when its extension is not one OpenAI takes; every `response_format`
 *   (json, text, srt, vtt, verbose_json; gpt-4o-* only json and text), `usage` as each model reports it
 *   (`duration` seconds for whisper-1, tokens for gpt-4o-*), `stream=true` as `transcript.text.*` events for
 *   gpt-4o-* (whisper-1 ignores `stream`, like OpenAI);
 * - errors in OpenAI's envelope: 401 `invalid_api_key` quoting the key, 400 `invalid_value`, 429 on request.
 *
 * The transcript's text is `transcript` (settable), so a test can tell what came through.
 */
export interface FakeOpenAIAudio {
  url: string
  /** Base for an `azure` provider (the resource endpoint). */
  origin: string
  requests: { path: string; headers: Record<string, string>; fields: Record<string, string>; file: { name: string; type: string; bytes: Uint8Array } | null; json: any }[]
  speeches: SpeechRecord[]
  /** Close to hold every speech before its last chunk. */
  gate: Gate
  /** Close to hold every answer before its headers: a provider still working on the request it was sent. */
  headersGate: Gate
  transcript: string
  /** Answer the next request with this status and OpenAI error body. */
  failNext(status: number, message?: string): void
  close(): void
}

const ENCODINGS: Record<string, { encoding: Encoding; type: string }> = {
  mp3: { encoding: { muxer: 'mp3', args: ['-ar', '24000', '-b:a', '64k'] }, type: 'audio/mpeg' },
  opus: { encoding: { muxer: 'ogg', args: ['-ar', '48000', '-c:a', 'libopus', '-b:a', '32k'] }, type: 'audio/opus' },
  aac: { encoding: { muxer: 'adts', args: ['-ar', '24000', '-c:a', 'aac', '-b:a', '64k'] }, type: 'audio/aac' },
  flac: { encoding: { muxer: 'flac', args: ['-ar', '24000'] }, type: 'audio/flac' },
  wav: { encoding: { muxer: 'wav', args: ['-ar', '24000'] }, type: 'audio/wav' },
  pcm: { encoding: { muxer: 's16le', args: ['-ar', '24000'] }, type: 'audio/pcm' },
}

/** Extensions OpenAI's transcription endpoint accepts (it goes by the file name). */
const OPENAI_EXTENSIONS = ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']

const error = (status: number, message: string, type: string, param: string | null = null, code: string | null = null) =>
  Response.json({ error: { message, type, param, code } }, { status })

const clock = (s: number, sep: string) => {
  const ms = Math.round(s * 1000)
  const p = (n: number, w = 2) => String(n).padStart(w, '0')
  return `${p(Math.floor(ms / 3_600_000))}:${p(Math.floor(ms / 60_000) % 60)}:${p(Math.floor(ms / 1000) % 60)}${sep}${p(ms % 1000, 3)}`
}

export function startFakeOpenAIAudio(options: { apiKey?: string; chunks?: number; chunkDelayMs?: number } = {}): FakeOpenAIAudio {
  const apiKey = options.apiKey ?? 'sk-upstream-test'
  const requests: FakeOpenAIAudio['requests'] = []
  const speeches: SpeechRecord[] = []
  const gate = new Gate()
  const headersGate = new Gate()
  let failure: { status: number; message: string } | null = null
  const fake: FakeOpenAIAudio = {
    url: '',
    origin: '',
    requests,
    speeches,
    gate,
    headersGate,
    transcript: 'the quick brown fox jumps over the lazy dog',
    failNext: (status, message = 'The server had an error while processing your request.') => {
      failure = { status, message }
    },
    close: () => server.stop(true),
  }

  async function speech(json: any) {
    const model = json.model as string
    if (typeof json.input !== 'string' || json.input.length === 0) return error(400, "[{'type': 'string_too_short', 'loc': ('body', 'input')}]", 'invalid_request_error', 'input', 'invalid_value')
    if (!json.voice) return error(400, "Missing required parameter: 'voice'.", 'invalid_request_error', 'voice', 'missing_required_parameter')
    const format = json.response_format ?? 'mp3'
    const known = ENCODINGS[format]
    if (!known) return error(400, `Invalid value: '${format}'. Supported values are: 'mp3', 'opus', 'aac', 'flac', 'wav', and 'pcm'.`, 'invalid_request_error', 'response_format', 'invalid_value')
    if (json.stream_format === 'sse' && model.startsWith('tts-1')) return error(400, 'stream_format sse is not supported for tts-1 or tts-1-hd.', 'invalid_request_error', 'stream_format', 'unsupported_value')
    const bytes = await synthesize(json.input, known.encoding)
    const record: SpeechRecord = { bytes: bytes.length, chunksSent: 0, done: false, aborted: false }
    speeches.push(record)
    const body = chunkedBody(bytes, { chunks: options.chunks ?? 6, delayMs: options.chunkDelayMs ?? 30, beforeLast: () => gate.wait() }, record)
    if (json.stream_format !== 'sse') return new Response(body, { headers: { 'content-type': known.type, 'transfer-encoding': 'chunked' } })
    const encoder = new TextEncoder()
    const reader = body.getReader()
    const events = new ReadableStream<Uint8Array>({
      async pull(controller) {
        const next = await reader.read()
        if (next.done) {
          const input = Math.ceil(json.input.length / 4)
          const output = Math.ceil(bytes.length / 100)
          controller.enqueue(encoder.encode(`data: ${JSON.stringify({ type: 'speech.audio.done', usage: { input_tokens: input, output_tokens: output, total_tokens: input + output } })}\n\n`))
          return controller.close()
        }
        controller.enqueue(encoder.encode(`data: ${JSON.stringify({ type: 'speech.audio.delta', audio: Buffer.from(next.value).toString('base64') })}\n\n`))
      },
      cancel: () => reader.cancel(),
    })
    return new Response(events, { headers: { 'content-type': 'text/event-stream' } })
  }

  async function transcription(task: 'transcribe' | 'translate', fields: Record<string, string>, file: File | null) {
    const model = fields.model ?? ''
    if (!model) return error(400, "you must provide a model parameter", 'invalid_request_error', null, null)
    if (!file) return error(400, "Missing required parameter: 'file'.", 'invalid_request_error', 'file', 'missing_required_parameter')
    const ext = file.name.split('.').pop()?.toLowerCase() ?? ''
    if (!OPENAI_EXTENSIONS.includes(ext)) {
      return error(400, `Invalid file format. Supported formats: ${JSON.stringify(OPENAI_EXTENSIONS)}`, 'invalid_request_error', null, null)
    }
    const duration = await audioDuration(new Uint8Array(await file.arrayBuffer()))
    if (duration === null) return error(400, 'Audio file might be corrupted or unsupported', 'invalid_request_error', 'file', 'invalid_value')
    const format = fields.response_format ?? 'json'
    const gpt4o = model.startsWith('gpt-4o')
    if (gpt4o && !['json', 'text'].includes(format)) {
      return error(400, `response_format '${format}' is not compatible with model '${model}'. Use 'json' or 'text'.`, 'invalid_request_error', 'response_format', 'unsupported_value')
    }
    const text = fake.transcript
    const audioTokens = Math.ceil(duration * 10)
    const outputTokens = text.split(' ').length + 2
    const usage = gpt4o
      ? { type: 'tokens', input_tokens: audioTokens + 3, input_token_details: { text_tokens: 3, audio_tokens: audioTokens }, output_tokens: outputTokens, total_tokens: audioTokens + 3 + outputTokens }
      : { type: 'duration', seconds: Math.ceil(duration) }
    if (fields.stream === 'true' && gpt4o && task === 'transcribe') {
      const encoder = new TextEncoder()
      const words = text.split(' ')
      let i = 0
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            await Bun.sleep(10)
            if (i < words.length) {
              controller.enqueue(encoder.encode(`data: ${JSON.stringify({ type: 'transcript.text.delta', delta: (i ? ' ' : '') + words[i++] })}\n\n`))
              return
            }
            controller.enqueue(encoder.encode(`data: ${JSON.stringify({ type: 'transcript.text.done', text, usage })}\n\n`))
            controller.close()
          },
        }),
        { headers: { 'content-type': 'text/event-stream' } },
      )
    }
    const words = timedWords(text, duration)
    const segments = [{ id: 0, seek: 0, start: 0, end: duration, text: ` ${text}`, tokens: [50364, 440], temperature: 0, avg_logprob: -0.2, compression_ratio: 1.1, no_speech_prob: 0.01 }]
    switch (format) {
      case 'text':
        return new Response(`${text}\n`, { headers: { 'content-type': 'text/plain; charset=utf-8' } })
      case 'srt':
        return new Response(`1\n${clock(0, ',')} --> ${clock(duration, ',')}\n${text}\n\n\n`, { headers: { 'content-type': 'text/plain; charset=utf-8' } })
      case 'vtt':
        return new Response(`WEBVTT\n\n${clock(0, '.')} --> ${clock(duration, '.')}\n${text}\n\n`, { headers: { 'content-type': 'text/plain; charset=utf-8' } })
      case 'verbose_json':
        return Response.json({
          task,
          language: 'english',
          duration,
          text,
          segments,
          ...(fields['timestamp_granularities[]'] === 'word' ? { words: words.map((w) => ({ word: w.text, start: w.start, end: w.end })) } : {}),
          usage,
        })
      case 'json':
        return Response.json({ text, usage })
      default:
        return error(400, `Invalid value: '${format}'.`, 'invalid_request_error', 'response_format', 'invalid_value')
    }
  }

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 60,
    async fetch(req) {
      const url = new URL(req.url)
      const azure = /^\/openai\/deployments\/([^/]+)(\/audio\/.*)$/.exec(url.pathname)
      const path = azure ? azure[2]! : url.pathname.replace(/^\/v1/, '')
      const key = azure ? req.headers.get('api-key') : /^Bearer (.+)$/.exec(req.headers.get('authorization') ?? '')?.[1]
      const record: FakeOpenAIAudio['requests'][number] = { path: url.pathname + url.search, headers: Object.fromEntries(req.headers), fields: {}, file: null, json: null }
      requests.push(record)
      if (key !== apiKey) {
        return azure
          ? Response.json({ error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint.' } }, { status: 401 })
          : error(401, `Incorrect API key provided: ${key ?? ''}. You can find your API key at https://platform.openai.com/account/api-keys.`, 'invalid_request_error', null, 'invalid_api_key')
      }
      if (failure) {
        const { status, message } = failure
        failure = null
        return error(status, message, status === 429 ? 'requests' : 'server_error', null, status === 429 ? 'rate_limit_exceeded' : null)
      }
      if (path === '/audio/speech') {
        record.json = await req.json()
        if (azure) record.json.model ??= decodeURIComponent(azure[1]!)
        await headersGate.wait()
        return speech(record.json)
      }
      if (path === '/audio/transcriptions' || path === '/audio/translations') {
        let form: Awaited<ReturnType<Request["formData"]>>
        try {
          form = await req.formData()
        } catch {
          return error(400, 'Could not parse multipart form', 'invalid_request_error')
        }
        for (const [name, value] of form) {
          if (typeof value === 'string') record.fields[name] = record.fields[name] === undefined ? value : `${record.fields[name]},${value}`
        }
        const file = form.get('file')
        if (file instanceof File) record.file = { name: file.name, type: file.type, bytes: new Uint8Array(await file.arrayBuffer()) }
        if (azure) record.fields.model ??= decodeURIComponent(azure[1]!)
        await headersGate.wait()
        return transcription(path.endsWith('translations') ? 'translate' : 'transcribe', record.fields, file instanceof File ? file : null)
      }
      return error(404, `Invalid URL (${req.method} ${url.pathname})`, 'invalid_request_error')
    },
  })
  fake.origin = `http://127.0.0.1:${server.port}`
  fake.url = `${fake.origin}/v1`
  return fake
}
