import { wavHeader } from '../../src/plugin-sdk/audio/index.ts'
import type { Arm } from '../arms.ts'
import { median, percentile } from '../stats.ts'
import { MiB, processTree, RssSampler, rssBytes } from '../sys.ts'

/**
 * Audio through Conduit against the same requests sent to the audio mock directly, interleaved:
 * - speech first byte, no conversion (mp3 asked, mp3 made): added p50/p99;
 * - speech converted on the fly (mp3 asked of a provider that makes only PCM, paced in real time): how much
 *   later the first converted byte arrives than the provider's first PCM byte, i.e. how much input audio the
 *   conversion holds before it speaks;
 * - one 10 MB WAV transcription: added time, and the gateway's peak RSS while it passes;
 * - 50 concurrent 20 MB uploads: the gateway's RSS growth.
 */
export interface AudioResult {
  speech: { requests: number; directP50: number; directP99: number; conduitP50: number; conduitP99: number; addedP50: number; addedP99: number }
  converted: { requests: number; directPcmFirstByteP50: number; convertedFirstByteP50: number; addedP50: number; addedMax: number }
  transcription: { bytes: number; rounds: number; directMs: number; conduitMs: number; addedMs: number; peakRssMiB: number; idleRssMiB: number }
  uploads: { count: number; bytesEach: number; rssBeforeMiB: number; rssPeakMiB: number; growthMiB: number; seconds: number }
}

/** Milliseconds to the first body byte of a response (the body is then read to the end). */
async function firstByte(url: string, headers: Record<string, string>, body: unknown): Promise<number> {
  const started = performance.now()
  const res = await fetch(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (!res.ok) throw new Error(`${url} → ${res.status} ${await res.text()}`)
  const reader = res.body!.getReader()
  await reader.read()
  const ms = performance.now() - started
  while (!(await reader.read()).done);
  return ms
}

/** A WAV of `bytes` (16 kHz mono silence), as a Blob to send many times. */
function wavOf(bytes: number): Blob {
  const wav = new Uint8Array(bytes)
  wav.set(wavHeader({ sampleRate: 16_000, channels: 1, dataBytes: bytes - 44 }))
  return new Blob([wav])
}

async function transcribe(baseURL: string, headers: Record<string, string>, wav: Blob, model: string): Promise<number> {
  const form = new FormData()
  form.append('model', model)
  form.append('file', wav, 'audio.wav')
  const started = performance.now()
  const res = await fetch(`${baseURL}/audio/transcriptions`, { method: 'POST', headers, body: form })
  if (!res.ok) throw new Error(`transcription → ${res.status} ${await res.text()}`)
  await res.arrayBuffer()
  return performance.now() - started
}

export async function runAudio(conduit: Arm, mockURL: string, o: { speechRequests: number; convertedRequests: number }, progress: (m: string) => void): Promise<AudioResult> {
  const speechBody = (model: string, format: string) => ({ model, voice: 'alloy', input: 'A benchmark sentence.', response_format: format })
  const direct: number[] = []
  const through: number[] = []
  for (let i = 0; i < 20; i++) await firstByte(`${conduit.baseURL}/audio/speech`, conduit.headers, speechBody('tts', 'mp3')) // warm-up
  for (let i = 0; i < o.speechRequests; i++) {
    direct.push(await firstByte(`${mockURL}/audio/speech`, {}, speechBody('tts-1', 'mp3')))
    through.push(await firstByte(`${conduit.baseURL}/audio/speech`, conduit.headers, speechBody('tts', 'mp3')))
  }
  const speech = {
    requests: o.speechRequests,
    directP50: median(direct),
    directP99: percentile(direct, 99),
    conduitP50: median(through),
    conduitP99: percentile(through, 99),
    addedP50: median(through) - median(direct),
    addedP99: percentile(through, 99) - percentile(direct, 99),
  }
  progress(`audio speech first byte: +${speech.addedP50.toFixed(3)} ms p50, +${speech.addedP99.toFixed(3)} ms p99`)

  const pcm: number[] = []
  const converted: number[] = []
  for (let i = 0; i < o.convertedRequests; i++) {
    pcm.push(await firstByte(`${mockURL}/audio/speech`, {}, speechBody('tts-1', 'pcm')))
    converted.push(await firstByte(`${conduit.baseURL}/audio/speech`, conduit.headers, speechBody('tts-pcm-only', 'mp3')))
  }
  const addedConverted = converted.map((ms, i) => ms - pcm[i]!)
  const conversion = {
    requests: o.convertedRequests,
    directPcmFirstByteP50: median(pcm),
    convertedFirstByteP50: median(converted),
    addedP50: median(addedConverted),
    addedMax: Math.max(...addedConverted),
  }
  progress(`audio converted speech: first mp3 byte ${conversion.addedP50.toFixed(1)} ms after the first PCM byte (p50)`)

  const pids = () => processTree(conduit.process!.pid)
  const tenMB = wavOf(10 * MiB)
  await transcribe(conduit.baseURL, conduit.headers, tenMB, 'stt')
  const idleRss = rssBytes(pids())
  const rounds = 5
  const directTimes: number[] = []
  const conduitTimes: number[] = []
  const sampler = new RssSampler(conduit.process!.pid, 20)
  for (let i = 0; i < rounds; i++) {
    directTimes.push(await transcribe(mockURL, {}, tenMB, 'whisper-1'))
    conduitTimes.push(await transcribe(conduit.baseURL, conduit.headers, tenMB, 'stt'))
  }
  sampler.stop()
  const transcription = {
    bytes: tenMB.size,
    rounds,
    directMs: median(directTimes),
    conduitMs: median(conduitTimes),
    addedMs: median(conduitTimes) - median(directTimes),
    peakRssMiB: sampler.peak / MiB,
    idleRssMiB: idleRss / MiB,
  }
  progress(`audio 10 MB transcription: +${transcription.addedMs.toFixed(1)} ms, peak RSS ${transcription.peakRssMiB.toFixed(0)} MiB`)

  const twentyMB = wavOf(20 * MiB)
  await Bun.sleep(500)
  const before = rssBytes(pids())
  const uploadSampler = new RssSampler(conduit.process!.pid, 20)
  const started = performance.now()
  await Promise.all(Array.from({ length: 50 }, () => transcribe(conduit.baseURL, conduit.headers, twentyMB, 'stt')))
  uploadSampler.stop()
  const uploads = {
    count: 50,
    bytesEach: twentyMB.size,
    rssBeforeMiB: before / MiB,
    rssPeakMiB: uploadSampler.peak / MiB,
    growthMiB: (uploadSampler.peak - before) / MiB,
    seconds: (performance.now() - started) / 1000,
  }
  progress(`audio 50 × 20 MB uploads: RSS +${uploads.growthMiB.toFixed(0)} MiB in ${uploads.seconds.toFixed(1)} s`)
  return { speech, converted: conversion, transcription, uploads }
}
