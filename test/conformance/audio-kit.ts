/**
 * Audio conformance kit: one suite every audio provider adapter must pass, like `kit.ts` for chat.
 *
 * A `test/conformance/audio-<name>.test.ts` file starts the subject's fake and calls `runAudioConformance(subject)`.
 * The kit starts a real gateway, configures a provider of `providerType` pointing at the fake under virtual model
 * names that differ from the upstream ones, and drives it with the official `openai` SDK. Media is checked with
 * ffprobe and against espeak-ng's own rendition of the same sentence — never by the gateway's headers.
 * Test names start with a check number (A1–A9) so results can be tabulated per subject.
 *
 * The fake must follow this contract (fake-elevenlabs, fake-deepgram and fake-openai-audio do):
 * - speech is espeak-ng reading the input, in the requested format, sent in several chunks; `gate.hold()` keeps
 *   every speech before its last chunk until `gate.release()`, and `speeches` shows whether it is `done`;
 * - a transcription answers `transcription.text` (whatever the audio), timed over the upload's real duration,
 *   with sentence segments (two speakers alternating by sentence when diarization is asked for);
 * - speech input containing `fail-429` / `fail-500` / `fail-503` → that status in the provider's own error shape;
 * - any other key than the configured one → the provider's 401/403; an unknown upstream model → its 4xx;
 * - `requests`: every request received, in order.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI, { toFile } from 'openai'
import type { GatewayConfig } from '../../src/config/config.ts'
import { SseDecoder } from '../../src/core/sse/decoder.ts'
import { ffmpeg, ffprobe, speak } from '../helpers/audio.ts'
import type { Gate, SpeechRecord } from '../helpers/fake-audio-common.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { validateSchema } from '../helpers/openapi.ts'
import type { ProviderFields } from './kit.ts'
import { failure } from '../helpers/failure.ts'

export interface AudioConformanceFake {
  url: string
  requests: { path: string; headers: Record<string, string>; body?: any }[]
  speeches: SpeechRecord[]
  gate: Gate
  stop(): unknown
}

export interface AudioConformanceSubject {
  name: string
  providerType: string
  startFake(): Promise<AudioConformanceFake>
  /** Credentials and options (voices) the fake accepts. */
  provider: ProviderFields
  /** Merged over `provider` for a provider whose credentials the fake refuses. Default `{ api_key: 'wrong-audio-key' }`. */
  wrongProvider?: ProviderFields
  speech: {
    /** Upstream model. */
    model: string
    /** The OpenAI voice clients send; the subject's options map it. */
    voice: string
    /** Formats the provider produces itself; the others must come converted by the gateway. */
    native: string[]
    /** What must reach the upstream for `voice` (its path or query holds it). */
    upstreamVoice: string
    /** The voice picks the upstream model (Deepgram: each Aura model is one voice), so `model` need not travel. */
    voiceIsModel?: boolean
  }
  transcription: {
    model: string
    /** What the fake's transcription says. */
    text: string
    /** The fake diarizes when asked (diarized_json): two speakers alternating by sentence. */
    diarization?: boolean
    /** An upstream model the provider refuses, and the status the client must get. */
    unknownModel: { model: string; status: number }
  }
  /** Speech model the provider refuses (4xx), the status the client must get, and a voice that leaves the model as it is. */
  unknownSpeechModel: { model: string; status: number; voice?: string }
  /** Request fields the adapter must drop (listed in `x-conduit-dropped-params`). */
  dropped?: { speech?: Record<string, unknown>; transcription?: Record<string, unknown> }
  /** The provider translates speech into English; otherwise the gateway must refuse translations. */
  translations?: boolean
  gatewayConfig?: Partial<GatewayConfig>
}

const TTS = 'audio-tts'
const STT = 'audio-stt'
const TTS_WRONG_KEY = 'audio-tts-wrong-key'
const STT_WRONG_KEY = 'audio-stt-wrong-key'
const TTS_UNKNOWN = 'audio-tts-unknown-model'
const STT_UNKNOWN = 'audio-stt-unknown-model'
const SENTENCE = 'The gateway relays speech as it is made.'

/** The content types OpenAI answers speech with. */
const MIME: Record<string, string> = { mp3: 'audio/mpeg', opus: 'audio/opus', aac: 'audio/aac', flac: 'audio/flac', wav: 'audio/wav', pcm: 'audio/pcm' }
/** What ffprobe must say each format is. */
const PROBE: Record<string, { format: string; codec: string }> = {
  mp3: { format: 'mp3', codec: 'mp3' },
  opus: { format: 'ogg', codec: 'opus' },
  aac: { format: 'aac', codec: 'aac' },
  flac: { format: 'flac', codec: 'flac' },
  wav: { format: 'wav', codec: 'pcm_s16le' },
}

const within = (actual: number, expected: number, share = 0.05) => Math.abs(actual - expected) <= expected * share

/** Every event of an SSE body, parsed. */
function sseEvents(text: string): any[] {
  const decoder = new SseDecoder()
  return [...decoder.push(text), ...decoder.flush()].filter((e) => e.data !== '').map((e) => JSON.parse(e.data))
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer())
}

export function runAudioConformance(subject: AudioConformanceSubject): void {
  describe(`audio conformance: ${subject.name}`, () => {
    let fake: AudioConformanceFake
    let gw: TestGateway
    let client: OpenAI
    let key: string
    let wav: Uint8Array
    let mp3: Uint8Array
    let seconds: number
    /** espeak-ng's own length for SENTENCE: what the speech from the fake must last. */
    let spokenSeconds: number

    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      fetch(`${gw.baseURL}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
    const upload = (path: string, fields: Record<string, string>, file?: { bytes: Uint8Array; name: string }) => {
      const form = new FormData()
      for (const [name, value] of Object.entries(fields)) form.append(name, value)
      if (file) form.append('file', new Blob([file.bytes]), file.name)
      return fetch(`${gw.baseURL}${path}`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form })
    }
    const expectEnvelope = async (res: Response, status: number) => {
      expect(res.status).toBe(status)
      const body = (await res.json()) as any
      expect(typeof body.error?.message).toBe('string')
      expect(body.error.message.length).toBeGreaterThan(0)
      expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type'])
      return body.error
    }
    const speech = (extra: Record<string, unknown> = {}) => ({ model: TTS, voice: subject.speech.voice, input: SENTENCE, ...extra }) as OpenAI.Audio.SpeechCreateParams
    const audioFile = () => toFile(wav, 'speech.wav')

    beforeAll(async () => {
      fake = await subject.startFake()
      gw = await startGateway(subject.gatewayConfig ?? {})
      const provider = { type: subject.providerType, base_url: fake.url, ...subject.provider }
      await gw.admin('POST', '/providers', { name: 'audio-subject', ...provider })
      await gw.admin('POST', '/providers', { name: 'audio-subject-wrong-key', ...provider, ...(subject.wrongProvider ?? { api_key: 'wrong-audio-key' }) })
      const model = (name: string, provider: string, upstream: string) => gw.admin('POST', '/models', { name, targets: [{ provider, model: upstream }] })
      await model(TTS, 'audio-subject', subject.speech.model)
      await model(STT, 'audio-subject', subject.transcription.model)
      await model(TTS_WRONG_KEY, 'audio-subject-wrong-key', subject.speech.model)
      await model(STT_WRONG_KEY, 'audio-subject-wrong-key', subject.transcription.model)
      await model(TTS_UNKNOWN, 'audio-subject', subject.unknownSpeechModel.model)
      await model(STT_UNKNOWN, 'audio-subject', subject.transcription.unknownModel.model)
      key = (await gw.admin('POST', '/keys', { name: 'audio-conformance' })).key
      client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
      wav = await speak('Please transcribe this short sentence for the conformance kit.')
      mp3 = await ffmpeg(wav, 'mp3')
      seconds = (await ffprobe(wav)).durationSeconds
      spokenSeconds = (await ffprobe(await speak(SENTENCE))).durationSeconds
    })

    afterAll(async () => {
      fake?.gate.release()
      await gw?.close()
      await fake?.stop()
    })

    for (const format of ['mp3', 'opus', 'aac', 'flac', 'wav'] as const) {
      const how = subject.speech.native.includes(format) ? 'native' : 'converted by the gateway'
      test(`A1 speech ${format} (${how}): OpenAI's content type, ffprobe agrees, as long as the sentence`, async () => {
        const response = await client.audio.speech.create(speech({ response_format: format }))
        expect(response.headers.get('content-type')).toBe(MIME[format]!)
        const probe = await ffprobe(new Uint8Array(await response.arrayBuffer()))
        expect({ format: probe.format, codec: probe.codec }).toEqual(PROBE[format]!)
        expect(probe.channels).toBe(1)
        expect(within(probe.durationSeconds, spokenSeconds, 0.1)).toBe(true)
      })
    }

    test(`A1 speech pcm (${subject.speech.native.includes('pcm') ? 'native' : 'converted by the gateway'}): 24 kHz 16-bit mono, its rate in a header`, async () => {
      const response = await client.audio.speech.create(speech({ response_format: 'pcm' }))
      expect(response.headers.get('content-type')).toBe('audio/pcm')
      expect(response.headers.get('x-conduit-audio-sample-rate')).toBe('24000')
      const bytes = new Uint8Array(await response.arrayBuffer())
      expect(bytes.length % 2).toBe(0)
      // Read as 24 kHz mono it lasts as long as the sentence: a wrong rate or channel count would not.
      expect(within(bytes.length / 48_000, spokenSeconds, 0.1)).toBe(true)
      // And it is speech, not silence or noise read at the wrong byte order: a loud but bounded signal.
      const samples = new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length >> 1)
      let energy = 0
      for (const s of samples) energy += s * s
      const rms = Math.sqrt(energy / samples.length)
      expect(rms).toBeGreaterThan(300)
      expect(rms).toBeLessThan(20000)
    })

    test('A2 speech streams: audio reaches the client before the upstream has finished', async () => {
      fake.gate.hold()
      try {
        const response = await client.audio.speech.create(speech())
        const reader = response.body!.getReader()
        const first = await reader.read()
        expect(first.done).toBe(false)
        expect(first.value!.length).toBeGreaterThan(0)
        expect(fake.speeches.at(-1)!.done).toBe(false)
        fake.gate.release()
        const rest: Uint8Array[] = [first.value!]
        for (let next = await reader.read(); !next.done; next = await reader.read()) rest.push(next.value)
        expect(fake.speeches.at(-1)!.done).toBe(true)
        expect((await ffprobe(Buffer.concat(rest))).codec).toBe('mp3')
      } finally {
        fake.gate.release()
      }
    })

    const converted = ['wav', 'flac', 'aac'].find((f) => !subject.speech.native.includes(f))
    for (const format of converted ? ['mp3', converted] : ['mp3']) {
      test(`A2 speech ${format}${format === converted ? ' (converted)' : ''}: a client leaving mid-speech stops the upstream within a second`, async () => {
        fake.gate.hold()
        try {
          const controller = new AbortController()
          const res = await fetch(`${gw.baseURL}/audio/speech`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify(speech({ response_format: format })),
            signal: controller.signal,
          })
          const reader = res.body!.getReader()
          expect((await reader.read()).done).toBe(false)
          const record = fake.speeches.at(-1)!
          controller.abort()
          const deadline = Date.now() + 1000
          while (!record.aborted && Date.now() < deadline) await Bun.sleep(10)
          expect(record.aborted).toBe(true)
          expect(record.done).toBe(false)
        } finally {
          fake.gate.release()
        }
      })
    }

    test('A2 /v1/audio/speech/stream: the same audio, chunked as produced', async () => {
      const res = await post('/audio/speech/stream', speech())
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe('audio/mpeg')
      const probe = await ffprobe(await readAll(res.body!))
      expect(probe.codec).toBe('mp3')
      expect(within(probe.durationSeconds, spokenSeconds, 0.1)).toBe(true)
    })

    test('A3 speech stream_format sse: speech.audio.delta events carry the audio, speech.audio.done the usage', async () => {
      const response = await client.audio.speech.create(speech({ stream_format: 'sse' }))
      expect(response.headers.get('content-type')).toContain('text/event-stream')
      const events = sseEvents(await response.text())
      const deltas = events.filter((e) => e.type === 'speech.audio.delta')
      expect(deltas.length).toBeGreaterThan(1)
      for (const e of deltas) validateSchema('SpeechAudioDeltaEvent', e)
      const done = events.at(-1)
      expect(done.type).toBe('speech.audio.done')
      validateSchema('SpeechAudioDoneEvent', done)
      const audio = Buffer.concat(deltas.map((e) => Buffer.from(e.audio, 'base64')))
      expect((await ffprobe(audio)).codec).toBe('mp3')
    })

    test('A4 speech upstream request: the upstream model and voice, the gateway’s credentials, never the client’s', async () => {
      const before = fake.requests.length
      await (await client.audio.speech.create(speech())).arrayBuffer()
      const upstream = fake.requests.slice(before).at(-1)!
      const wire = JSON.stringify(upstream)
      if (!subject.speech.voiceIsModel) expect(wire).toContain(subject.speech.model)
      expect(wire).toContain(subject.speech.upstreamVoice)
      expect(wire).not.toContain(TTS)
      expect(JSON.stringify(upstream.headers)).not.toContain(key)
    })

    if (subject.dropped?.speech) {
      test('A4 speech: fields the provider cannot carry are dropped and named', async () => {
        const { response } = await client.audio.speech.create(speech(subject.dropped!.speech)).withResponse()
        await response.arrayBuffer()
        const dropped = (response.headers.get('x-conduit-dropped-params') ?? '').split(',').map((s) => s.trim())
        for (const name of Object.keys(subject.dropped!.speech!)) expect(dropped).toContain(name)
        expect(JSON.stringify(fake.requests.at(-1)!.body)).not.toContain(String(Object.values(subject.dropped!.speech!)[0]))
      })
    }

    test('A5 transcription json (wav and mp3): the text, spec-valid, the audio seconds measured', async () => {
      for (const file of [await audioFile(), await toFile(mp3, 'speech.mp3')]) {
        const { data, response } = await client.audio.transcriptions.create({ file, model: STT }).withResponse()
        expect(data.text).toBe(subject.transcription.text)
        validateSchema('CreateTranscriptionResponseJson', data)
        expect(within(Number(response.headers.get('x-conduit-audio-seconds')), seconds)).toBe(true)
      }
      const upstream = fake.requests.at(-1)!
      expect(JSON.stringify(upstream)).toContain(subject.transcription.model)
      expect(JSON.stringify(upstream)).not.toContain(STT)
    })

    test('A5 transcription text: the text alone, as text/plain', async () => {
      const { data, response } = await client.audio.transcriptions.create({ file: await audioFile(), model: STT, response_format: 'text' }).withResponse()
      expect(response.headers.get('content-type')).toStartWith('text/plain')
      expect(String(data).trim()).toBe(subject.transcription.text)
    })

    test('A5 transcription srt and vtt: timed cues whose text is the transcript, within the audio', async () => {
      const cueText = (body: string, arrow: RegExp) =>
        body
          .split(/\r?\n/)
          .filter((line) => line.trim() && !arrow.test(line) && !/^\d+$/.test(line) && line !== 'WEBVTT')
          .join(' ')
      const stamp = (s: string) => {
        const [h, m, rest] = s.split(':')
        return Number(h) * 3600 + Number(m) * 60 + Number(rest!.replace(',', '.'))
      }
      const srt = String(await client.audio.transcriptions.create({ file: await audioFile(), model: STT, response_format: 'srt' }))
      expect(srt).toMatch(/^1\r?\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\r?\n/)
      const arrowSrt = /^(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})$/
      expect(cueText(srt, arrowSrt)).toBe(subject.transcription.text)
      const ends = srt.split(/\r?\n/).flatMap((l) => arrowSrt.exec(l)?.[2] ?? []).map(stamp)
      expect(ends.length).toBeGreaterThan(0)
      expect(Math.max(...ends)).toBeLessThanOrEqual(seconds * 1.05)

      const vtt = String(await client.audio.transcriptions.create({ file: await audioFile(), model: STT, response_format: 'vtt' }))
      expect(vtt).toStartWith('WEBVTT')
      expect(cueText(vtt, /^\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}$/)).toBe(subject.transcription.text)
    })

    test('A5 transcription verbose_json: spec-valid, duration within 5% of ffprobe, segments and words in order', async () => {
      const data = (await client.audio.transcriptions.create({ file: await audioFile(), model: STT, response_format: 'verbose_json', timestamp_granularities: ['word', 'segment'] })) as any
      validateSchema('CreateTranscriptionResponseVerboseJson', data)
      expect(data.text).toBe(subject.transcription.text)
      expect(within(data.duration, seconds)).toBe(true)
      expect(data.language).toBe('english')
      expect(data.segments.length).toBeGreaterThan(0)
      expect(data.segments.map((s: any) => s.text.trim()).join(' ')).toBe(subject.transcription.text)
      const times = data.segments.flatMap((s: any) => [s.start, s.end])
      expect(times).toEqual([...times].sort((a: number, b: number) => a - b))
      expect(data.words.length).toBe(subject.transcription.text.split(/\s+/).length)
    })

    if (subject.transcription.diarization) {
      test('A5 transcription diarized_json: segments with speakers named as OpenAI names them', async () => {
        const res = await upload('/audio/transcriptions', { model: STT, response_format: 'diarized_json' }, { bytes: wav, name: 'speech.wav' })
        expect(res.status).toBe(200)
        const data = (await res.json()) as any
        validateSchema('CreateTranscriptionResponseDiarizedJson', data)
        expect(data.segments.map((s: any) => s.speaker)).toEqual(['A', 'B'])
      })
    }

    test('A6 transcription stream: transcript.text.delta events, then transcript.text.done with the text', async () => {
      const stream = await client.audio.transcriptions.create({ file: await audioFile(), model: STT, stream: true })
      const events: any[] = []
      for await (const event of stream) events.push(event)
      expect(events.length).toBeGreaterThanOrEqual(2)
      const done = events.at(-1)
      expect(done.type).toBe('transcript.text.done')
      validateSchema('TranscriptTextDoneEvent', done)
      expect(done.text).toBe(subject.transcription.text)
      const deltas = events.slice(0, -1)
      for (const e of deltas) validateSchema('TranscriptTextDeltaEvent', e)
      expect(deltas.map((e) => e.delta).join('')).toBe(subject.transcription.text)
    })

    if (subject.dropped?.transcription) {
      test('A6 transcription: fields the provider cannot carry are dropped and named', async () => {
        const fields = Object.fromEntries(Object.entries(subject.dropped!.transcription!).map(([k, v]) => [k, String(v)]))
        const res = await upload('/audio/transcriptions', { model: STT, ...fields }, { bytes: wav, name: 'speech.wav' })
        expect(res.status).toBe(200)
        const dropped = (res.headers.get('x-conduit-dropped-params') ?? '').split(',').map((s) => s.trim())
        for (const name of Object.keys(fields)) expect(dropped).toContain(name)
      })
    }

    test(`A7 translations: ${subject.translations ? 'served' : 'refused before anything is sent upstream'}`, async () => {
      const before = fake.requests.length
      if (subject.translations) {
        const data = await client.audio.translations.create({ file: await audioFile(), model: STT })
        expect(data.text.length).toBeGreaterThan(0)
        return
      }
      const file = await audioFile()
      const error = await failure(() => client.audio.translations.create({ file, model: STT }))
      expect([error.status, error.param]).toEqual([400, 'model'])
      expect(error.message).toContain('translations')
      expect(fake.requests.length).toBe(before)
    })

    test('A8 errors: the upstream refusing the gateway’s key is a 502 upstream_auth_failed, for speech and transcription', async () => {
      const tts = await failure(() => client.audio.speech.create(speech({ model: TTS_WRONG_KEY })))
      expect([tts.status, tts.code]).toEqual([502, 'upstream_auth_failed'])
      const stt = await failure(async () => client.audio.transcriptions.create({ file: await audioFile(), model: STT_WRONG_KEY }))
      expect([stt.status, stt.code]).toEqual([502, 'upstream_auth_failed'])
      expect(stt.message).not.toContain('wrong-audio-key')
    })

    test('A8 errors: upstream 4xx keep their status, in our envelope with the provider’s message', async () => {
      const stt = await upload('/audio/transcriptions', { model: STT_UNKNOWN }, { bytes: wav, name: 'speech.wav' })
      const sttError = await expectEnvelope(stt, subject.transcription.unknownModel.status)
      expect(sttError.message).not.toContain('returned HTTP')
      const tts = await post('/audio/speech', speech({ model: TTS_UNKNOWN, voice: subject.unknownSpeechModel.voice ?? subject.speech.voice }))
      const ttsError = await expectEnvelope(tts, subject.unknownSpeechModel.status)
      expect(ttsError.message).not.toContain('returned HTTP')
    })

    test('A8 errors: upstream 429, 500 and 503 reach the client with their status and our envelope', async () => {
      for (const status of [429, 500, 503]) {
        const res = await post('/audio/speech', speech({ input: `Please fail-${status} now.` }))
        const error = await expectEnvelope(res, status)
        if (status === 429) expect(error.type).toBe('rate_limit_error')
      }
    })

    test('A9 bad input is refused by the gateway with nothing sent upstream: no file, not audio, unknown format, speed', async () => {
      const before = fake.requests.length
      const noFile = await upload('/audio/transcriptions', { model: STT })
      expect((await expectEnvelope(noFile, 400)).param).toBe('file')
      const notAudio = await upload('/audio/transcriptions', { model: STT }, { bytes: new TextEncoder().encode('this is not audio, only text'), name: 'speech.wav' })
      const notAudioError = await expectEnvelope(notAudio, 400)
      expect([notAudioError.param, notAudioError.code]).toEqual(['file', 'invalid_audio_file'])
      const format = await upload('/audio/transcriptions', { model: STT, response_format: 'docx' }, { bytes: wav, name: 'speech.wav' })
      expect((await expectEnvelope(format, 400)).param).toBe('response_format')
      const speed = await post('/audio/speech', speech({ speed: 9 }))
      expect((await expectEnvelope(speed, 400)).param).toBe('speed')
      const empty = await post('/audio/speech', speech({ input: '' }))
      expect((await expectEnvelope(empty, 400)).param).toBe('input')
      expect(fake.requests.length).toBe(before)
    })
  })
}
