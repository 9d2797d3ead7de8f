import { definePlugin, t } from '../../plugin-sdk/index.ts'
import { FfmpegTranscoder } from './transcoder.ts'

/**
 * `builtin:audio-transcode`: audio conversion for the core (a format the provider cannot take or make, an upload over
 * its limit) with ffmpeg, in a bounded pool of processes. Without ffmpeg the gateway still serves everything that
 * needs no conversion; a request that does gets a 501 naming what is missing.
 */
export default definePlugin({
  name: 'audio-transcode',
  version: '1.0.0',
  apiVersion: 1,
  configSchema: t.Object({
    ffmpeg_path: t.String({ default: 'ffmpeg', description: 'Program name (looked up on PATH) or path of ffmpeg.' }),
    ffprobe_path: t.String({ default: 'ffprobe', description: 'Program name or path of ffprobe, for durations headers do not tell.' }),
    max_processes: t.Integer({ minimum: 1, default: 4, description: 'ffmpeg processes at once.' }),
    max_queued: t.Integer({ minimum: 0, default: 64, description: 'Conversions waiting for a process; past it a request gets 503 transcoder_busy.' }),
    timeout_ms: t.Integer({ minimum: 100, default: 600_000, description: 'Longest one conversion may run.' }),
    spare_idle_ms: t.Integer({
      minimum: 0,
      default: 300_000,
      description: 'After a streamed conversion, one ffmpeg with its command line is started to wait this long for the next (it spares that one ~45 ms of start-up); 0 starts none.',
    }),
    mp3_bitrate: t.String({ default: '128k', pattern: '^[0-9]+k$' }),
    opus_bitrate: t.String({ default: '32k', pattern: '^[0-9]+k$' }),
    aac_bitrate: t.String({ default: '96k', pattern: '^[0-9]+k$' }),
  }),
  async setup(api) {
    const c = api.config as {
      ffmpeg_path: string
      ffprobe_path: string
      max_processes: number
      max_queued: number
      timeout_ms: number
      spare_idle_ms: number
      mp3_bitrate: string
      opus_bitrate: string
      aac_bitrate: string
    }
    const ffmpeg = Bun.which(c.ffmpeg_path)
    const version = ffmpeg ? await versionOf(ffmpeg) : null
    if (version) api.log.info({ path: ffmpeg }, `audio transcoding with ffmpeg ${version}`)
    else api.log.warn({ ffmpeg_path: c.ffmpeg_path }, 'ffmpeg not found: requests that need audio conversion will be refused')
    const transcoder = new FfmpegTranscoder({
      ffmpeg: version ? ffmpeg : null,
      ffprobe: Bun.which(c.ffprobe_path),
      ffmpegVersion: version,
      maxProcesses: c.max_processes,
      maxQueued: c.max_queued,
      timeoutMs: c.timeout_ms,
      spareIdleMs: c.spare_idle_ms,
      mp3Bitrate: c.mp3_bitrate,
      opusBitrate: c.opus_bitrate,
      aacBitrate: c.aac_bitrate,
      log: api.log,
      counter: api.counter({ name: 'conduit_audio_transcode_total', help: 'Audio conversions and probes by result and output format.', labelNames: ['result', 'to'] }),
    })
    api.registerTranscoder(transcoder)
    api.onClose(() => transcoder.close())
  },
})

/** `ffmpeg -version`'s first line names the version; a program that does not answer it is not a usable ffmpeg. */
async function versionOf(path: string): Promise<string | null> {
  try {
    const proc = Bun.spawn([path, '-hide_banner', '-version'], { stdin: 'ignore', stdout: 'pipe', stderr: 'ignore' })
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000)
    const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited])
    clearTimeout(timer)
    if (code !== 0) return null
    return /ffmpeg version (\S+)/.exec(out)?.[1] ?? 'unknown'
  } catch {
    return null
  }
}
