import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { OpenAIRealtimeWS } from 'openai/realtime/ws'
import { OpenAIRealtimeWS as BetaRealtimeWS } from 'openai/beta/realtime/ws'
import { pcm16ToBytes } from '../../src/plugin-sdk/audio/index.ts'
import { tone } from '../helpers/audio.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { realtimeSetup, type RealtimeSetup } from './setup.ts'
import { selfSignedCert } from '../helpers/tls.ts'

/**
 * The official openai SDK's realtime clients (OpenAIRealtimeWS on the `ws` package, GA and beta) against the
 * gateway over TLS (a self-signed certificate made by openssl), relaying to a fake OpenAI realtime upstream:
 * a full voice turn, a function call round trip, usage priced into the ledger.
 */
let s: RealtimeSetup
let key: string
let tls: ReturnType<typeof selfSignedCert>

beforeAll(async () => {
  tls = selfSignedCert()
  s = await realtimeSetup({ tls })
  key = await s.key()
})
afterAll(() => s.close())

/** The SDK dials wss:// whatever the base URL says; it trusts our certificate through `ws`'s `ca`. */
function client(Kind: typeof OpenAIRealtimeWS | typeof BetaRealtimeWS = OpenAIRealtimeWS) {
  const openai = new OpenAI({ apiKey: key, baseURL: `https://127.0.0.1:${new URL(s.gw.origin).port}/v1` })
  const rt = new (Kind as any)({ model: 'voice', options: { ca: tls.pem } }, openai)
  const events: any[] = []
  rt.on('event', (e: any) => events.push(e))
  const errors: any[] = []
  rt.on('error', (e: any) => errors.push(e))
  const until = async (type: string, from = 0, timeoutMs = 5_000) => {
    const deadline = performance.now() + timeoutMs
    for (;;) {
      const found = events.slice(from).find((e) => e.type === type)
      if (found) return found
      if (performance.now() > deadline) throw new Error(`no ${type}; got ${events.map((e) => e.type).join(', ')} ${errors.map((e) => e.message).join('; ')}`)
      await Bun.sleep(5)
    }
  }
  const opened = new Promise<void>((resolve, reject) => {
    rt.socket.on('open', () => resolve())
    rt.socket.on('error', reject)
  })
  return { rt, events, errors, until, opened }
}

const spend = async () => (await s.gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE endpoint = 'realtime' ORDER BY created_at`) as any[]

describe('official SDK realtime over TLS', () => {
  test('GA: a voice turn (audio in, audio and transcript out), the virtual model shown, usage priced per response', async () => {
    const c = client()
    await c.opened
    const created = await c.until('session.created')
    expect(created.session.model).toBe('voice')
    validateSchema('RealtimeServerEventSessionCreated', created)
    c.rt.send({ type: 'session.update', session: { type: 'realtime', instructions: 'Be brief.', output_modalities: ['audio'] } })
    const updated = await c.until('session.updated')
    expect(updated.session.model).toBe('voice')
    expect(updated.session.instructions).toBe('Be brief.')
    const audio = Buffer.from(pcm16ToBytes(tone(440, 1, 24_000))).toString('base64')
    c.rt.send({ type: 'input_audio_buffer.append', audio })
    c.rt.send({ type: 'input_audio_buffer.commit' })
    await c.until('input_audio_buffer.committed')
    c.rt.send({ type: 'response.create' })
    const done = await c.until('response.done')
    const deltas = c.events.filter((e) => e.type === 'response.output_audio.delta')
    expect(deltas.length).toBeGreaterThan(0)
    expect(Buffer.concat(deltas.map((d) => Buffer.from(d.delta, 'base64'))).length).toBe(24_000) // 0.5 s of pcm16
    expect(c.events.filter((e) => e.type === 'response.output_audio_transcript.delta').map((e) => e.delta).join('')).toBe('Hello from the fake realtime model.')
    validateSchema('RealtimeServerEventResponseDone', done)
    expect(done.response.usage.output_token_details.audio_tokens).toBeGreaterThan(0)
    // The provider got the audio as sent, and our model name for it.
    const upstream = s.fake.sessions.at(-1)!
    expect(upstream.model).toBe('gpt-realtime')
    expect(Buffer.concat(upstream.events.filter((e) => e.type === 'input_audio_buffer.append').map((e) => Buffer.from(e.audio, 'base64'))).length).toBe(48_000)
    c.rt.close()
    await Bun.sleep(300) // the ledger writes in batches
    const rows = (await spend()).filter((r) => r.prompt_tokens > 0)
    expect(rows.length).toBeGreaterThanOrEqual(1)
    const u = done.response.usage
    const row = rows.at(-1)!
    expect(Number(row.prompt_tokens)).toBe(u.input_tokens)
    expect(Number(row.completion_tokens)).toBe(u.output_tokens)
    // gpt-realtime list prices (USD per M): text 4 in / 16 out, audio 32 in / 64 out, cached 0.4.
    const d = u.input_token_details
    const expected = Math.ceil(
      (d.text_tokens - d.cached_tokens) * 4 + d.cached_tokens * 0.4 + d.audio_tokens * 32 + u.output_token_details.text_tokens * 16 + u.output_token_details.audio_tokens * 64,
    )
    expect(Number(row.cost_micros)).toBe(expected)
    expect(row.model).toBe('voice')
    expect(c.errors).toEqual([])
  })

  test('GA: a function call round trip', async () => {
    const c = client()
    await c.until('session.created')
    const tools = [{ type: 'function', name: 'get_weather', description: 'Weather of a city', parameters: { type: 'object', properties: { city: { type: 'string' } } } }]
    c.rt.send({ type: 'session.update', session: { type: 'realtime', tools, output_modalities: ['text'] } })
    await c.until('session.updated')
    c.rt.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Weather in Paris?' }] } })
    c.rt.send({ type: 'response.create' })
    const call = await c.until('response.function_call_arguments.done')
    expect(call.name).toBe('get_weather')
    expect(JSON.parse(call.arguments)).toEqual({ city: 'Paris' })
    const first = c.events.length
    c.rt.send({ type: 'conversation.item.create', item: { type: 'function_call_output', call_id: call.call_id, output: JSON.stringify({ sky: 'sunny' }) } })
    c.rt.send({ type: 'response.create' })
    await c.until('response.done', first)
    const done = c.events.slice(first).find((e) => e.type === 'response.done')
    expect(done.response.output[0].content[0].text).toBe('It is sunny in Paris.')
    expect(c.events.filter((e) => e.type === 'response.output_text.delta').length).toBeGreaterThan(0)
    c.rt.close()
  })

  test('beta (OpenAI-Beta: realtime=v1): the beta vocabulary goes through untranslated', async () => {
    const c = client(BetaRealtimeWS)
    const created = await c.until('session.created')
    expect(created.session.model).toBe('voice')
    expect(created.session.input_audio_format).toBe('pcm16') // a beta session object
    validateSchema('RealtimeBetaServerEventSessionCreated', created)
    expect(s.fake.sessions.at(-1)!.protocol).toBe('beta')
    c.rt.send({ type: 'session.update', session: { modalities: ['text', 'audio'], voice: 'verse' } })
    expect((await c.until('session.updated')).session.voice).toBe('verse')
    c.rt.send({ type: 'input_audio_buffer.append', audio: Buffer.from(pcm16ToBytes(tone(300, 0.2, 24_000))).toString('base64') })
    c.rt.send({ type: 'input_audio_buffer.commit' })
    await c.until('conversation.item.created')
    c.rt.send({ type: 'response.create' })
    const done = await c.until('response.done')
    validateSchema('RealtimeBetaServerEventResponseDone', done)
    expect(c.events.some((e) => e.type === 'response.audio.delta')).toBe(true)
    expect(c.events.some((e) => e.type === 'response.audio_transcript.delta')).toBe(true)
    expect(c.events.some((e) => e.type === 'response.output_audio.delta')).toBe(false)
    c.rt.close()
  })

  test('an upstream error event reaches the SDK as an error', async () => {
    const c = client()
    await c.until('session.created')
    c.rt.send({ type: 'response.create', response: { metadata: { fake_error: 'the model is overloaded' } } })
    const error = await c.until('error')
    expect(error.error.code).toBe('fake_error')
    validateSchema('RealtimeServerEventError', error)
    await Bun.sleep(20)
    expect(c.errors.length).toBe(1)
    c.rt.close()
  })
})
