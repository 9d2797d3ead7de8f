import type { ServerWebSocket } from 'bun'
import { pcm16FromBytes, pcm16ToBytes } from '../../src/plugin-sdk/audio/index.ts'
import { tone } from './audio.ts'

/**
 * OpenAI's realtime WebSocket API as a test upstream, on OpenAI's path (`/v1/realtime?model=`, `Authorization:
 * Bearer`) and Azure's (`/openai/v1/realtime?model=` GA, `/openai/realtime?api-version=&deployment=` beta, `api-key`),
 * speaking both vocabularies as OpenAI does: GA by default, beta with `OpenAI-Beta: realtime=v1`.
 *
 * - `session.created` first (with the upstream model's name), `session.update` → `session.updated` (an audio format
 *   the fake was told it does not take is an `invalid_value` error event, as a pcm16-only server answers);
 * - `input_audio_buffer.append/commit/clear` → `…committed` (+ `conversation.item.added/done` GA,
 *   `conversation.item.created` beta) / `…cleared`; the audio received is kept, decoded, per session;
 * - `conversation.item.create` → the item events; a `function_call_output` item is remembered;
 * - `response.create` → `response.created`, then either a function call (the session has tools and no function
 *   output answered yet: `response.function_call_arguments.delta/done`) or a spoken answer (audio deltas of a 24 kHz
 *   440 Hz tone and its transcript deltas; text deltas with `output_modalities: ['text']`), then `response.done`
 *   with usage (input/output, text/audio, cached) computed from what the session received;
 * - `response.cancel` → `response.done` with status `cancelled`; an unknown event → an `error` event;
 * - `response.create` with `response.metadata.fake_flood_bytes` sends that many bytes of audio deltas at once
 *   (a provider outpacing a slow client); `.fake_error` answers an `error` event instead (its code `fake_error`, or
 *   the value itself when it is a code such as `conversation_already_has_active_response`, OpenAI's refusal of a
 *   create while a response runs), naming the create's `event_id` when it had one; `.fake_pace_ms` waits that
 *   long between the audio's 100 ms chunks (a model speaking as it generates).
 * A handshake without the key is refused with 401, as OpenAI does.
 */
export interface FakeRealtimeSession {
  path: string
  protocol: 'ga' | 'beta'
  headers: Record<string, string>
  model: string
  /** Every client event, parsed, in order. */
  events: any[]
  /** The input audio received (pcm16 samples when the session's input format is pcm16, else the G.711 bytes). */
  audio: Uint8Array[]
  session: Record<string, any>
  closed: { code: number; reason: string } | null
  ws: ServerWebSocket<any>
}

export interface FakeRealtime {
  url: string
  origin: string
  key: string
  sessions: FakeRealtimeSession[]
  /** Formats the fake takes (default all of OpenAI's). */
  formats: string[]
  /** Milliseconds to wait before answering the handshake (a slow provider). */
  handshakeDelayMs: number
  /** Refuse the next handshakes with this HTTP status. */
  refuseWith: number | null
  /** The output tone's frequency. */
  frequency: number
  /** Kill every open socket without a close frame (a crash). */
  killAll(): void
  closeAll(code: number, reason: string): void
  waitFor(predicate: () => boolean, timeoutMs?: number): Promise<void>
  close(): void
}

const RATE = 24_000
let seq = 0
const id = (prefix: string) => `${prefix}_${(++seq).toString(36).padStart(6, '0')}fake`

const GA_FORMAT: Record<string, any> = { pcm16: { type: 'audio/pcm', rate: 24000 }, g711_ulaw: { type: 'audio/pcmu' }, g711_alaw: { type: 'audio/pcma' } }
const BETA_FORMAT: Record<string, string> = { 'audio/pcm': 'pcm16', 'audio/pcmu': 'g711_ulaw', 'audio/pcma': 'g711_alaw' }

function initialSession(protocol: 'ga' | 'beta', model: string): Record<string, any> {
  const vad = { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 200 }
  if (protocol === 'beta') {
    return {
      id: id('sess'), object: 'realtime.session', model, expires_at: Math.floor(Date.now() / 1000) + 1800, modalities: ['text', 'audio'],
      instructions: '', voice: 'alloy', input_audio_format: 'pcm16', output_audio_format: 'pcm16', input_audio_transcription: null,
      turn_detection: vad, tools: [], tool_choice: 'auto', temperature: 0.8, max_response_output_tokens: 'inf',
    }
  }
  return {
    type: 'realtime', object: 'realtime.session', id: id('sess'), model, output_modalities: ['audio'], instructions: '', tools: [], tool_choice: 'auto',
    max_output_tokens: 'inf', tracing: null, truncation: 'auto', prompt: null, expires_at: Math.floor(Date.now() / 1000) + 1800,
    audio: {
      // OpenAI leaves transcription and noise reduction out until they are set.
      input: { format: GA_FORMAT.pcm16, turn_detection: { ...vad, idle_timeout_ms: null, create_response: true, interrupt_response: true } },
      output: { format: GA_FORMAT.pcm16, voice: 'alloy', speed: 1 },
    },
  }
}

const formatOf = (s: FakeRealtimeSession, dir: 'input' | 'output'): string =>
  s.protocol === 'beta' ? s.session[`${dir}_audio_format`] : (BETA_FORMAT[s.session.audio?.[dir]?.format?.type] ?? 'pcm16')

function merge(target: Record<string, any>, patch: Record<string, any>) {
  for (const [k, v] of Object.entries(patch)) {
    if (v && typeof v === 'object' && !Array.isArray(v) && target[k] && typeof target[k] === 'object' && !Array.isArray(target[k])) merge(target[k], v)
    else target[k] = v
  }
}

export async function startFakeRealtime(options: { key?: string; tls?: { cert: string; key: string } } = {}): Promise<FakeRealtime> {
  const key = options.key ?? 'sk-fake-realtime-key'
  const sessions: FakeRealtimeSession[] = []
  const send = (s: FakeRealtimeSession, event: Record<string, any>) => s.ws.send(JSON.stringify({ event_id: id('event'), ...event }))
  const error = (s: FakeRealtimeSession, code: string, message: string, eventId: string | null = null, param: string | null = null) =>
    send(s, { type: 'error', error: { type: 'invalid_request_error', code, message, param, event_id: eventId } })

  const respond = async (s: FakeRealtimeSession, event: any) => {
    const params = event.response ?? {}
    const failure = params.metadata?.fake_error
    if (failure) return error(s, /^[a-z_]+$/.test(failure) ? failure : 'fake_error', String(failure), event.event_id ?? null)
    const rid = id('resp')
    const response = { id: rid, object: 'realtime.response', status: 'in_progress', output: [], conversation_id: id('conv'), usage: null, metadata: params.metadata ?? null }
    send(s, { type: 'response.created', response })
    const beta = s.protocol === 'beta'
    const inputAudioBytes = s.audio.reduce((n, a) => n + a.length, 0)
    const inputSeconds = inputAudioBytes / (formatOf(s, 'input') === 'pcm16' ? RATE * 2 : 8000)
    const textIn = Math.ceil(JSON.stringify(s.events.filter((e) => e.type === 'conversation.item.create' || e.type === 'session.update')).length / 4) + 12
    let output: any
    let audioOut = 0
    let textOut = 0
    const flood = Number(params.metadata?.fake_flood_bytes ?? 0)
    const pace = Number(params.metadata?.fake_pace_ms ?? 0)
    const tools = params.tools ?? s.session.tools ?? []
    const answered = s.events.some((e) => e.type === 'conversation.item.create' && e.item?.type === 'function_call_output')
    if (tools.length > 0 && !answered) {
      const tool = tools[0]
      const callId = id('call')
      const item = { id: id('item'), object: 'realtime.item', type: 'function_call', status: 'in_progress', name: tool.name, call_id: callId, arguments: '' }
      send(s, { type: 'response.output_item.added', response_id: rid, output_index: 0, item })
      const args = JSON.stringify({ city: 'Paris' })
      for (const part of [args.slice(0, 5), args.slice(5)]) {
        send(s, { type: 'response.function_call_arguments.delta', response_id: rid, item_id: item.id, output_index: 0, call_id: callId, delta: part })
      }
      send(s, { type: 'response.function_call_arguments.done', response_id: rid, item_id: item.id, output_index: 0, call_id: callId, name: tool.name, arguments: args })
      output = { ...item, status: 'completed', arguments: args }
      send(s, { type: 'response.output_item.done', response_id: rid, output_index: 0, item: output })
      textOut = 12
    } else {
      const text = answered ? 'It is sunny in Paris.' : 'Hello from the fake realtime model.'
      const modalities = beta ? (params.modalities ?? s.session.modalities) : (params.output_modalities ?? s.session.output_modalities)
      const audio = modalities.includes('audio')
      const item = { id: id('item'), object: 'realtime.item', type: 'message', status: 'in_progress', role: 'assistant', content: [] }
      send(s, { type: 'response.output_item.added', response_id: rid, output_index: 0, item })
      const ids = { response_id: rid, item_id: item.id, output_index: 0, content_index: 0 }
      send(s, { type: 'response.content_part.added', ...ids, part: audio ? { type: 'audio', transcript: '' } : { type: 'text', text: '' } })
      const words = text.split(' ')
      if (audio) {
        const pcm = pcm16ToBytes(tone(fake.frequency, 0.5, RATE))
        const chunk = 4800 // 100 ms
        const sendChunk = (bytes: Uint8Array) => send(s, { type: beta ? 'response.audio.delta' : 'response.output_audio.delta', ...ids, delta: Buffer.from(bytes).toString('base64') })
        for (let i = 0; i < pcm.length; i += chunk) {
          if (i > 0 && pace) await Bun.sleep(pace)
          sendChunk(pcm.subarray(i, i + chunk))
          const word = words[i / chunk]
          if (word) send(s, { type: beta ? 'response.audio_transcript.delta' : 'response.output_audio_transcript.delta', ...ids, delta: (i ? ' ' : '') + word })
        }
        for (const [i, word] of words.entries()) if (i * chunk >= pcm.length) send(s, { type: beta ? 'response.audio_transcript.delta' : 'response.output_audio_transcript.delta', ...ids, delta: ' ' + word })
        for (let sent = 0; sent < flood; sent += 48_000) sendChunk(new Uint8Array(48_000))
        audioOut = Math.ceil((pcm.length + flood) / 2 / RATE * 20)
        send(s, { type: beta ? 'response.audio.done' : 'response.output_audio.done', ...ids })
        send(s, { type: beta ? 'response.audio_transcript.done' : 'response.output_audio_transcript.done', ...ids, transcript: text })
        send(s, { type: 'response.content_part.done', ...ids, part: { type: 'audio', transcript: text } })
      } else {
        for (const [i, word] of words.entries()) send(s, { type: beta ? 'response.text.delta' : 'response.output_text.delta', ...ids, delta: (i ? ' ' : '') + word })
        send(s, { type: beta ? 'response.text.done' : 'response.output_text.done', ...ids, text })
        send(s, { type: 'response.content_part.done', ...ids, part: { type: 'text', text } })
      }
      textOut = words.length
      output = { ...item, status: 'completed', content: [audio ? { type: 'output_audio', transcript: text } : { type: 'output_text', text }] }
      send(s, { type: 'response.output_item.done', response_id: rid, output_index: 0, item: output })
    }
    const audioIn = Math.ceil(inputSeconds * 10)
    const cached = s.events.filter((e) => e.type === 'response.create').length > 1 ? 8 : 0
    const usage = {
      total_tokens: textIn + audioIn + textOut + audioOut,
      input_tokens: textIn + audioIn,
      output_tokens: textOut + audioOut,
      input_token_details: { text_tokens: textIn, audio_tokens: audioIn, image_tokens: 0, cached_tokens: cached, cached_tokens_details: { text_tokens: cached, audio_tokens: 0, image_tokens: 0 } },
      output_token_details: { text_tokens: textOut, audio_tokens: audioOut },
    }
    s.audio = []
    send(s, { type: 'response.done', response: { ...response, status: 'completed', output: [output], usage } })
  }

  const handle = (s: FakeRealtimeSession, text: string) => {
    let event: any
    try {
      event = JSON.parse(text)
    } catch {
      return error(s, 'invalid_json', 'The event is not JSON.')
    }
    s.events.push(event)
    const beta = s.protocol === 'beta'
    switch (event.type) {
      case 'session.update': {
        const patch = event.session ?? {}
        const formats = beta ? [patch.input_audio_format, patch.output_audio_format] : [BETA_FORMAT[patch.audio?.input?.format?.type], BETA_FORMAT[patch.audio?.output?.format?.type]]
        const refused = formats.find((f) => f && !fake.formats.includes(f))
        if (refused) return error(s, 'invalid_value', `Invalid audio format '${refused}': this server takes ${fake.formats.join(', ')}.`, event.event_id ?? null, 'session.audio')
        if (!beta && patch.type !== 'realtime') return error(s, 'missing_required_parameter', "Missing required parameter: 'session.type'.", event.event_id ?? null, 'session.type')
        merge(s.session, patch)
        return send(s, { type: 'session.updated', session: s.session })
      }
      case 'input_audio_buffer.append':
        s.audio.push(Buffer.from(event.audio ?? '', 'base64'))
        return
      case 'input_audio_buffer.commit': {
        const itemId = id('item')
        send(s, { type: 'input_audio_buffer.committed', previous_item_id: null, item_id: itemId })
        const item = { id: itemId, object: 'realtime.item', type: 'message', status: 'completed', role: 'user', content: [{ type: 'input_audio', transcript: null }] }
        if (beta) return send(s, { type: 'conversation.item.created', previous_item_id: null, item })
        send(s, { type: 'conversation.item.added', previous_item_id: null, item })
        return send(s, { type: 'conversation.item.done', previous_item_id: null, item })
      }
      case 'input_audio_buffer.clear':
        s.audio = []
        return send(s, { type: 'input_audio_buffer.cleared' })
      case 'conversation.item.create': {
        const item = { id: id('item'), object: 'realtime.item', status: 'completed', ...event.item }
        if (beta) return send(s, { type: 'conversation.item.created', previous_item_id: null, item })
        send(s, { type: 'conversation.item.added', previous_item_id: null, item })
        return send(s, { type: 'conversation.item.done', previous_item_id: null, item })
      }
      case 'response.create':
        return void respond(s, event)
      case 'response.cancel':
        return send(s, { type: 'response.done', response: { id: event.response_id ?? id('resp'), object: 'realtime.response', status: 'cancelled', output: [], usage: { total_tokens: 0, input_tokens: 0, output_tokens: 0 } } })
      default:
        return error(s, 'invalid_value', `Invalid value: '${event.type}'. Supported values are: 'session.update', 'input_audio_buffer.append', …`, event.event_id ?? null, 'type')
    }
  }

  const server = Bun.serve<{ session: FakeRealtimeSession }>({
    port: 0,
    hostname: '127.0.0.1',
    ...(options.tls ? { tls: { cert: Bun.file(options.tls.cert), key: Bun.file(options.tls.key) } } : {}),
    async fetch(request, srv) {
      const url = new URL(request.url)
      const headers = Object.fromEntries(request.headers)
      let model: string | null
      let beta = /realtime=v1/.test(headers['openai-beta'] ?? '')
      let presented: string | null
      if (url.pathname === '/v1/realtime') {
        model = url.searchParams.get('model')
        presented = /^Bearer (.+)$/.exec(headers.authorization ?? '')?.[1] ?? null
      } else if (url.pathname === '/openai/v1/realtime') {
        model = url.searchParams.get('model')
        presented = headers['api-key'] ?? null
      } else if (url.pathname === '/openai/realtime' && url.searchParams.get('api-version')) {
        model = url.searchParams.get('deployment')
        presented = headers['api-key'] ?? null
        beta = true // the deployment API speaks the beta events
      } else return Response.json({ error: { message: 'Not found', type: 'invalid_request_error', param: null, code: null } }, { status: 404 })
      if (fake.handshakeDelayMs) await Bun.sleep(fake.handshakeDelayMs)
      if (fake.refuseWith) return Response.json({ error: { message: 'Refused', type: 'server_error', param: null, code: null } }, { status: fake.refuseWith })
      if (presented !== key) {
        return Response.json({ error: { message: `Incorrect API key provided: ${presented}.`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }, { status: 401 })
      }
      if (!model) return Response.json({ error: { message: 'Missing model', type: 'invalid_request_error', param: 'model', code: null } }, { status: 400 })
      const session = { path: url.pathname + url.search, protocol: beta ? 'beta' : 'ga', headers, model, events: [], audio: [], session: initialSession(beta ? 'beta' : 'ga', model), closed: null } as unknown as FakeRealtimeSession
      return srv.upgrade(request, { data: { session } }) ? undefined : new Response('Expected a WebSocket', { status: 426 })
    },
    websocket: {
      open(ws) {
        const s = ws.data.session
        s.ws = ws
        sessions.push(s)
        send(s, { type: 'session.created', session: s.session })
      },
      message(ws, message) {
        handle(ws.data.session, String(message))
      },
      close(ws, code, reason) {
        ws.data.session.closed = { code, reason }
      },
    },
  })

  const origin = `${options.tls ? 'https' : 'http'}://127.0.0.1:${server.port}`
  const fake: FakeRealtime = {
    url: `${origin}/v1`,
    origin,
    key,
    sessions,
    formats: ['pcm16', 'g711_ulaw', 'g711_alaw'],
    handshakeDelayMs: 0,
    refuseWith: null,
    frequency: 440,
    killAll() {
      for (const s of sessions) if (!s.closed) s.ws.terminate()
    },
    closeAll(code, reason) {
      for (const s of sessions) if (!s.closed) s.ws.close(code, reason)
    },
    async waitFor(predicate, timeoutMs = 5_000) {
      const deadline = performance.now() + timeoutMs
      while (!predicate()) {
        if (performance.now() > deadline) throw new Error('fake realtime: condition not met in time')
        await Bun.sleep(10)
      }
    },
    close() {
      server.stop(true)
    },
  }
  return fake
}

/** Samples of pcm16 audio received as bytes. */
export const samplesOf = (chunks: Uint8Array[]) => pcm16FromBytes(Buffer.concat(chunks))
