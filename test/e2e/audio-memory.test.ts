import { afterAll, beforeAll, expect, test } from 'bun:test'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { adminClient } from '../helpers/admin-client.ts'
import { wavHeader } from '../../src/plugin-sdk/audio/index.ts'
import { MASTER_KEY } from '../helpers/gateway.ts'
import { MB, rssBytes } from '../helpers/proc-stats.ts'
import { startEnv } from '../../src/cluster/own-command.ts'
import { startProcess, stopProcess, type RunningGateway } from '../helpers/process.ts'

/**
 * Uploads are spooled, never held whole: 50 concurrent 20 MB WAV uploads through a gateway process must not grow
 * its RSS by more than 100 MB (they would take 1 GB held in memory), and every spooled file is gone afterwards.
 * The upstream is a sink that reads each multipart body to the end without keeping it.
 */
const UPLOADS = 50
const SIZE = 20 * MB

let gw: RunningGateway
let dataDir: string
let sink: ReturnType<typeof Bun.serve>
let received: number[] = []

/** A real WAV: the SDK's 44-byte header and 16 kHz mono silence. */
function silenceWav(bytes: number): Uint8Array {
  const wav = new Uint8Array(bytes)
  wav.set(wavHeader({ sampleRate: 16_000, channels: 1, dataBytes: bytes - 44 }))
  return wav
}

beforeAll(async () => {
  sink = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 120,
    async fetch(req) {
      let size = 0
      for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) size += chunk.byteLength
      received.push(size)
      return Response.json({ text: 'silence', usage: { type: 'duration', seconds: 655 } })
    },
  })
  dataDir = mkdtempSync(path.join(tmpdir(), 'conduit-audio-mem-'))
  // One process that serves (no workers), started as main.ts would run itself, so its RSS is the gateway's own.
  gw = await startProcess(
    { CONDUIT_DATA_DIR: dataDir, CONDUIT_MASTER_KEY: MASTER_KEY, CONDUIT_WORKERS: '1', TMPDIR: dataDir, ...startEnv({}, 1) },
    [],
    ['bun', 'src/main.ts'],
  )
})

afterAll(async () => {
  await stopProcess(gw.proc)
  sink.stop(true)
  rmSync(dataDir, { recursive: true, force: true })
})

test('50 concurrent 20 MB uploads grow the gateway by less than 100 MB, and leave no spooled file', async () => {
  const admin = adminClient(gw.origin)
  await admin('POST', '/providers', { name: 'sink', type: 'openai-compatible', base_url: `http://127.0.0.1:${sink.port}/v1`, api_key: 'x', options: { audio: { max_upload_bytes: 64 * MB } } })
  await admin('POST', '/models', { name: 'stt', targets: [{ provider: 'sink', model: 'whisper-large-v3' }] })
  const key = (await admin('POST', '/keys', { name: 'k' })).key
  const wav = new Blob([silenceWav(SIZE)])
  const upload = async () => {
    const form = new FormData()
    form.append('model', 'stt')
    form.append('file', wav, 'silence.wav')
    const res = await fetch(`${gw.origin}/v1/audio/transcriptions`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form })
    expect(res.status).toBe(200)
    expect(((await res.json()) as any).text).toBe('silence')
  }
  await upload() // warm: code paths compiled, buffers allocated once
  await Bun.sleep(500)
  const pid = gw.proc.pid
  const before = rssBytes(pid)
  let peak = before
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(pid))), 25)
  try {
    await Promise.all(Array.from({ length: UPLOADS }, upload))
  } finally {
    clearInterval(sampler)
  }
  peak = Math.max(peak, rssBytes(pid))
  console.log(`RSS before ${(before / MB).toFixed(1)} MB, peak ${(peak / MB).toFixed(1)} MB, growth ${((peak - before) / MB).toFixed(1)} MB for ${UPLOADS} × ${SIZE / MB} MB`)
  expect(received.length).toBe(UPLOADS + 1)
  expect(received.every((n) => n > SIZE)).toBe(true) // the whole file went upstream each time
  expect(peak - before).toBeLessThan(100 * MB)
  // Spooled files are deleted as each request ends (the unlink itself completes a moment later).
  const left = () => readdirSync(dataDir).filter((name) => name.startsWith('conduit-spool-')).flatMap((dir) => readdirSync(path.join(dataDir, dir)))
  for (let i = 0; i < 40 && left().length > 0; i++) await Bun.sleep(50)
  expect(left()).toEqual([])
}, 120_000)
