/**
 * The audio upstream of the benchmark, in its own process: OpenAI's audio paths with nothing to compute.
 * - `/v1/audio/speech`: 24 kHz mono PCM (a 440 Hz tone) in 20 ms frames, 1 s in all. `pcm` is paced as a real
 *   provider speaks, the first frame at once and then one every `FRAME_MS`; any other `response_format` gets the
 *   same bytes at once, labelled as that format (nothing converts them unless the gateway does).
 * - `/v1/audio/transcriptions`: reads the whole multipart body and answers a fixed transcript.
 * Prints `audio mock listening on <url>` when ready.
 */
const FRAME_MS = Number(process.env.FRAME_MS ?? 20)
const SECONDS = 1
const RATE = 24_000
const frameSamples = (RATE * 20) / 1000
const frames: Uint8Array[] = []
for (let f = 0; f < (SECONDS * 1000) / 20; f++) {
  const pcm = new Int16Array(frameSamples)
  for (let i = 0; i < frameSamples; i++) pcm[i] = Math.round(Math.sin((2 * Math.PI * 440 * (f * frameSamples + i)) / RATE) * 12_000)
  frames.push(new Uint8Array(pcm.buffer))
}
const TYPES: Record<string, string> = { mp3: 'audio/mpeg', pcm: 'audio/pcm', wav: 'audio/wav', flac: 'audio/flac', opus: 'audio/opus', aac: 'audio/aac' }

const audioServer = Bun.serve({
  port: Number(process.env.PORT ?? 0),
  hostname: '127.0.0.1',
  idleTimeout: 120,
  async fetch(req) {
    const path = new URL(req.url).pathname
    if (path === '/v1/audio/speech') {
      const body = (await req.json()) as { response_format?: string }
      const paced = body.response_format === 'pcm'
      let next = 0
      return new Response(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            if (next > 0 && paced) await Bun.sleep(FRAME_MS)
            if (next >= frames.length) return controller.close()
            controller.enqueue(frames[next++]!)
          },
        }),
        { headers: { 'content-type': TYPES[body.response_format ?? 'mp3'] ?? 'application/octet-stream' } },
      )
    }
    if (path === '/v1/audio/transcriptions') {
      let size = 0
      for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) size += chunk.byteLength
      return Response.json({ text: `received ${size} bytes`, usage: { type: 'duration', seconds: 1 } })
    }
    return new Response('not found', { status: 404 })
  },
})
console.log(`audio mock listening on http://127.0.0.1:${audioServer.port}/v1`)
