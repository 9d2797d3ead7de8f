import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { headersOf } from './fake-audio-common.ts'
import { wavHeader } from '../../src/plugin-sdk/audio/index.ts'

/**
 * A real speech recogniser as an OpenAI-compatible upstream: PocketSphinx (Debian `pocketsphinx`,
 * `pocketsphinx-en-us`) behind `POST /v1/audio/transcriptions` (multipart `file`, `model`, `response_format`
 * json | text | verbose_json). Like many self-hosted engines it takes 16 kHz mono 16-bit WAV only, checked on the
 * bytes (the RIFF header), never the file name: anything else is a 400 in OpenAI's error shape. Its accuracy on
 * synthetic speech is poor; tests compare what comes through the gateway with `recognizeDirect` on the same audio.
 */

export const POCKETSPHINX = '/usr/bin/pocketsphinx_continuous'
const MODEL = '/usr/share/pocketsphinx/model/en-us'

const dir = mkdtempSync(join(tmpdir(), 'conduit-asr-'))
let n = 0

/**
 * PocketSphinx's hypothesis for a 16 kHz mono 16-bit WAV (its utterances joined by spaces). The engine skips a
 * fixed 44-byte header, so the samples are handed to it under a canonical one: two files with the same samples
 * but other chunks (ffmpeg's LIST) or an unknown streamed length get the same hypothesis.
 */
export async function recognizeDirect(wav16k: Uint8Array): Promise<string> {
  const wav = wav16kMono(wav16k)
  if (!wav) throw new Error('recognizeDirect takes 16 kHz mono 16-bit WAV only')
  const samples = wav16k.subarray(wav.dataOffset, wav.dataOffset + wav.dataLength)
  const header = wavHeader({ sampleRate: 16_000, channels: 1, dataBytes: samples.length })
  const path = join(dir, `in-${n++}.wav`)
  await Bun.write(path, new Blob([header, samples]))
  try {
    const proc = Bun.spawn(
      [POCKETSPHINX, '-infile', path, '-logfn', '/dev/null', '-hmm', `${MODEL}/en-us`, '-lm', `${MODEL}/en-us.lm.bin`, '-dict', `${MODEL}/cmudict-en-us.dict`],
      { stdout: 'pipe', stderr: 'pipe' },
    )
    const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
    if (code !== 0) throw new Error(`pocketsphinx exited ${code}: ${err.slice(0, 300)}`)
    return out.split('\n').map((line) => line.trim()).filter(Boolean).join(' ')
  } finally {
    rmSync(path, { force: true })
  }
}

/** Where the samples of a PCM 16-bit mono 16 kHz WAV are, and how long they last; null for any other file. */
export function wav16kMono(bytes: Uint8Array): { seconds: number; dataOffset: number; dataLength: number } | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const tag = (at: number) => (at + 4 <= bytes.length ? String.fromCharCode(...bytes.subarray(at, at + 4)) : '')
  if (tag(0) !== 'RIFF' || tag(8) !== 'WAVE') return null
  let fmt: { format: number; channels: number; rate: number; bits: number } | null = null
  for (let at = 12; at + 8 <= bytes.length; ) {
    const id = tag(at)
    const size = view.getUint32(at + 4, true)
    if (id === 'fmt ' && at + 24 <= bytes.length) {
      let format = view.getUint16(at + 8, true)
      // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of the sub-format GUID.
      if (format === 0xfffe && at + 34 <= bytes.length) format = view.getUint16(at + 32, true)
      fmt = { format, channels: view.getUint16(at + 10, true), rate: view.getUint32(at + 12, true), bits: view.getUint16(at + 22, true) }
    }
    if (id === 'data') {
      if (!fmt || fmt.format !== 1 || fmt.channels !== 1 || fmt.rate !== 16000 || fmt.bits !== 16) return null
      // A streamed WAV may leave the size unknown (0 or 0xFFFFFFFF): count what is there.
      const length = (size === 0 || size === 0xffffffff || at + 8 + size > bytes.length ? bytes.length - at - 8 : size) & ~1
      return { seconds: length / 32000, dataOffset: at + 8, dataLength: length }
    }
    at += 8 + size + (size & 1)
  }
  return null
}

export interface AsrRequest {
  headers: Record<string, string>
  fields: Record<string, string>
  file: { name: string; type: string; size: number; bytes: Uint8Array } | null
}

export interface AsrServer {
  /** Base URL for an `openai-compatible` provider (…/v1). */
  url: string
  requests: AsrRequest[]
  stop(): void
}

const openAIError = (status: number, message: string, param: string | null, code: string | null) =>
  Response.json({ error: { message, type: 'invalid_request_error', param, code } }, { status })

export async function startAsrServer(options: { apiKey?: string } = {}): Promise<AsrServer> {
  const requests: AsrRequest[] = []
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 60,
    async fetch(req) {
      const url = new URL(req.url)
      if (req.method !== 'POST' || url.pathname !== '/v1/audio/transcriptions') return openAIError(404, `Unknown route ${req.method} ${url.pathname}`, null, 'not_found')
      if (options.apiKey && req.headers.get('authorization') !== `Bearer ${options.apiKey}`) {
        return Response.json({ error: { message: 'Incorrect API key provided.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }, { status: 401 })
      }
      let form: Awaited<ReturnType<Request["formData"]>>
      try {
        form = await req.formData()
      } catch {
        return openAIError(400, 'The request must be multipart/form-data.', null, 'invalid_request')
      }
      const fields: Record<string, string> = {}
      form.forEach((value, name) => {
        if (typeof value === 'string') fields[name] = value
      })
      const file = form.get('file')
      if (!(file instanceof Blob)) {
        requests.push({ headers: headersOf(req), fields, file: null })
        return openAIError(400, "Missing required parameter: 'file'.", 'file', 'missing_required_parameter')
      }
      const bytes = await file.bytes()
      requests.push({ headers: headersOf(req), fields, file: { name: (file as File).name, type: file.type, size: file.size, bytes } })
      if (!fields.model) return openAIError(400, "Missing required parameter: 'model'.", 'model', 'missing_required_parameter')
      const format = fields.response_format ?? 'json'
      if (!['json', 'text', 'verbose_json'].includes(format)) return openAIError(400, `response_format '${format}' is not supported by this server.`, 'response_format', 'unsupported_value')
      const wav = wav16kMono(bytes)
      if (!wav) return openAIError(400, 'Unsupported audio: 16 kHz mono WAV only', 'file', 'unsupported_format')

      const text = await recognizeDirect(bytes)
      const usage = { type: 'duration', seconds: Math.ceil(wav.seconds) }
      if (format === 'text') return new Response(`${text}\n`, { headers: { 'content-type': 'text/plain; charset=utf-8' } })
      if (format === 'json') return Response.json({ text, usage })
      return Response.json({
        task: 'transcribe',
        language: 'english',
        duration: wav.seconds,
        text,
        segments: [{ id: 0, seek: 0, start: 0, end: wav.seconds, text, tokens: [], temperature: 0, avg_logprob: 0, compression_ratio: 1, no_speech_prob: 0 }],
        usage,
      })
    },
  })
  return {
    url: `http://127.0.0.1:${server.port}/v1`,
    requests,
    stop: () => server.stop(true),
  }
}
