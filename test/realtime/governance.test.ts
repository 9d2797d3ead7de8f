import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { mulawToPcm16, pcm16ToBytes, pcm16ToMulaw } from '../../src/plugin-sdk/audio/index.ts'
import { dominantFrequency, tone } from '../helpers/audio.ts'
import { samplesOf, startFakeRealtime, type FakeRealtime } from '../helpers/fake-realtime.ts'
import { startInstances, type Instance } from '../helpers/instances.ts'
import { createTestDatabase } from '../helpers/postgres.ts'
import { EventLog, handshake, realtimeSetup, type RealtimeSetup } from './setup.ts'

/** Governance while a session is open (budget, tpm, revocation across instances) and G.711 bridged to pcm16. */
const bearer = (k: string) => ({ authorization: `Bearer ${k}` })

describe('budgets and token limits per response', () => {
  let s: RealtimeSetup
  // 0.01 USD a token, whatever the unit: a response costs dollars, so a $1 budget lasts a turn or two.
  const price = { input: 10_000, output: 10_000, cached_input: 10_000 }
  beforeAll(async () => {
    s = await realtimeSetup({ price })
  })
  afterAll(() => s.close())

  test('a budget exhausted mid-session: response.create answered with insufficient_quota, not forwarded, the session ended with 1008', async () => {
    const key = await s.key({ budget: { usd: 1, period: 'total' } })
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    c.send({ type: 'session.update', session: { type: 'realtime', max_output_tokens: 10, output_modalities: ['audio'] } })
    await c.next('session.updated')
    const upstream = s.fake.sessions.at(-1)!
    let done = 0
    let error: any = null
    // A response whose 10 output tokens no longer fit is refused alone; asked for one token, it may still fit.
    let output = 10
    for (let i = 0; i < 40 && !error; i++) {
      const from = c.events.length
      c.send({ type: 'response.create', event_id: `evt_client_${i}`, response: { max_output_tokens: output } })
      for (;;) {
        const event = c.events.slice(from).find((e) => e.type === 'response.done' || e.type === 'error')
        if (event?.type === 'response.done') done++
        if (event?.type === 'error' && event.error.code === 'response_exceeds_budget' && output > 1) output = 1
        else if (event?.type === 'error') error = event
        if (event) break
        await Bun.sleep(5)
      }
    }
    expect(done).toBeGreaterThanOrEqual(1)
    expect(error.error).toMatchObject({ type: 'insufficient_quota', code: 'insufficient_quota' })
    const closed = await c.waitClosed(1_000)
    expect(closed).toMatchObject({ code: 1008, reason: 'budget exhausted' })
    // The refused response.create never reached the provider.
    expect(upstream.events.filter((e) => e.type === 'response.create').length).toBe(done)
    await Bun.sleep(300)
    const rows = (await s.gw.gateway.store.sql`SELECT cost_micros FROM spend_ledger WHERE key_id = (SELECT id FROM virtual_keys WHERE key_last4 = ${key.slice(-4)}) AND endpoint = 'realtime'`) as any[]
    const spent = rows.reduce((n, r) => n + Number(r.cost_micros), 0)
    expect(rows.filter((r) => Number(r.cost_micros) > 0).length).toBe(done)
    expect(spent).toBeLessThanOrEqual(1_000_000)
    // And the key cannot open another session with nothing left.
    if (spent === 1_000_000) expect((await handshake(s.origin, '/v1/realtime?model=voice', bearer(key))).status).toBe(429)
  })

  test('a response whose worst case does not fit what is left is refused alone: the session goes on, and a smaller one is answered', async () => {
    // $1 is 100 tokens here: the default output reserve cannot fit, a reply of a few tokens can.
    const key = await s.key({ budget: { usd: 1, period: 'total' } })
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    let from = c.events.length
    c.send({ type: 'response.create' })
    const refused = (await c.next('error', 5_000, from)).error
    expect(refused).toMatchObject({ type: 'insufficient_quota', code: 'response_exceeds_budget' })
    expect(refused.message).toContain('a smaller max_output_tokens may fit')
    from = c.events.length
    c.send({ type: 'response.create', response: { max_output_tokens: 5 } })
    expect((await c.next('response.done', 5_000, from)).response.status).toBe('completed')
    expect(c.closed).toBeNull()
    c.ws.close()
    await c.waitClosed()
  })

  test('a response.create the provider refuses costs nothing, holds nothing, and the next response is billed as itself', async () => {
    const key = await s.key({ budget: { usd: 100, period: 'total' } })
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    // A first turn, so that the conversation has tokens a response would be billed for.
    c.send({ type: 'response.create', event_id: 'evt_first' })
    const first = (await c.next('response.done')).response
    // Named by its event_id, and unnamed: refused because a response runs, the oldest create waiting.
    let from = c.events.length
    c.send({ type: 'response.create', event_id: 'evt_refused', response: { metadata: { fake_error: 'server_is_busy' } } })
    expect((await c.next('error', 5_000, from)).error).toMatchObject({ code: 'server_is_busy', event_id: 'evt_refused' })
    from = c.events.length
    c.send({ type: 'response.create', response: { metadata: { fake_error: 'conversation_already_has_active_response' } } })
    expect((await c.next('error', 5_000, from)).error).toMatchObject({ code: 'conversation_already_has_active_response', event_id: null })
    // Unnamed by the client and refused for any other reason (the SDKs send no event_id): the gateway named it
    // upstream, so the refusal is its own; the client still sees the event_id it sent, none.
    from = c.events.length
    c.send({ type: 'response.create', response: { metadata: { fake_error: 'server_is_busy' } } })
    expect((await c.next('error', 5_000, from)).error).toMatchObject({ code: 'server_is_busy', event_id: null })
    expect(s.fake.sessions.at(-1)!.events.at(-1)).toMatchObject({ type: 'response.create', event_id: expect.any(String) })
    from = c.events.length
    c.send({ type: 'response.create', event_id: 'evt_answered' })
    const done = (await c.next('response.done', 5_000, from)).response
    c.ws.close()
    await c.waitClosed()
    await Bun.sleep(300)
    await s.gw.gateway.ledger.flush()
    const rows = (await s.gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE key_id = (SELECT id FROM virtual_keys WHERE key_last4 = ${key.slice(-4)}) AND endpoint = 'realtime'`) as any[]
    const billed = rows.filter((r) => Number(r.cost_micros) > 0).sort((a, b) => (a.request_id < b.request_id ? -1 : 1))
    expect(billed.map((r) => [r.prompt_tokens, r.completion_tokens, r.estimated, r.aborted])).toEqual([
      [first.usage.input_tokens, first.usage.output_tokens, 0, 0],
      [done.usage.input_tokens, done.usage.output_tokens, 0, 0],
    ])
  })

  test('a client that leaves mid-answer: the response is billed the audio and transcript it was sent, not its input alone', async () => {
    const key = await s.key({ budget: { usd: 100, period: 'total' } })
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    c.send({ type: 'session.update', session: { type: 'realtime', output_modalities: ['audio'] } })
    await c.next('session.updated')
    // The fake speaks 0.5 s of audio in five 100 ms deltas, 150 ms apart: the client leaves after the third.
    c.send({ type: 'response.create', response: { metadata: { fake_pace_ms: '150' } } })
    for (;;) {
      if (c.events.filter((e) => e.type === 'response.output_audio.delta').length >= 3) break
      await Bun.sleep(5)
    }
    const audio = c.events.filter((e) => e.type === 'response.output_audio.delta')
    const words = c.events.filter((e) => e.type === 'response.output_audio_transcript.delta').length
    c.ws.close()
    await c.waitClosed()
    await Bun.sleep(300)
    await s.gw.gateway.ledger.flush()
    const rows = (await s.gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE key_id = (SELECT id FROM virtual_keys WHERE key_last4 = ${key.slice(-4)}) AND endpoint = 'realtime' AND completion_tokens > 0`) as any[]
    expect(rows).toHaveLength(1)
    // 24 kHz pcm16: 48,000 bytes a second, 20 audio tokens a second (OpenAI's rate for the model's audio).
    const seconds = audio.reduce((n, e) => n + Buffer.from(e.delta, 'base64').length, 0) / 48_000
    expect(seconds).toBeGreaterThanOrEqual(0.3)
    expect(rows[0]).toMatchObject({ estimated: 1, aborted: 1 })
    // What the gateway relayed: what the client had counted, and at most the next delta and its word, on their way as it left.
    const heard = Math.ceil(seconds * 20) + words
    expect(Number(rows[0].completion_tokens)).toBeGreaterThanOrEqual(heard)
    expect(Number(rows[0].completion_tokens)).toBeLessThanOrEqual(heard + 3)
    expect(Number(rows[0].cost_micros)).toBe((Number(rows[0].prompt_tokens) + Number(rows[0].completion_tokens)) * 10_000)
  })

  test('tpm: a response.create past the limit is an error event; the session goes on', async () => {
    const key = await s.key({ tpm: 100 })
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    c.send({ type: 'session.update', session: { type: 'realtime', max_output_tokens: 60 } })
    await c.next('session.updated')
    c.send({ type: 'response.create' })
    await c.next('response.done')
    const from = c.events.length
    c.send({ type: 'response.create', event_id: 'evt_second' })
    const error = await c.next('error', 2_000, from)
    expect(error.error).toMatchObject({ code: 'rate_limit_exceeded', event_id: 'evt_second' })
    // Still open: other events go through.
    c.send({ type: 'conversation.item.create', item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'still there?' }] } })
    await c.next('conversation.item.added', 2_000, from)
    expect(c.closed).toBeNull()
    c.ws.close()
  })
})


describe('a response cut short by the client, with audio in', () => {
  let s: RealtimeSetup
  // Audio dearer than text, and the model's output priced as audio whatever it is: the input's unit shows in the cost.
  const price = { input: 10_000, output: 40_000, input_audio: 40_000, output_audio: 40_000 }
  beforeAll(async () => {
    s = await realtimeSetup({ price })
  })
  afterAll(() => s.close())

  test('is billed its input audio as audio, counted as the provider counts it (10 tokens a second)', async () => {
    const key = await s.key()
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    c.send({ type: 'session.update', session: { type: 'realtime', output_modalities: ['audio'] } })
    await c.next('session.updated')
    c.send({ type: 'input_audio_buffer.append', audio: Buffer.from(pcm16ToBytes(tone(440, 1, 24_000))).toString('base64') })
    c.send({ type: 'input_audio_buffer.commit' })
    await c.next('input_audio_buffer.committed')
    c.send({ type: 'response.create', response: { metadata: { fake_pace_ms: '150' } } })
    await c.next('response.output_audio.delta')
    c.ws.close()
    await c.waitClosed()
    await Bun.sleep(300)
    await s.gw.gateway.ledger.flush()
    const [row] = (await s.gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE key_id = (SELECT id FROM virtual_keys WHERE key_last4 = ${key.slice(-4)}) AND endpoint = 'realtime' AND completion_tokens > 0`) as any[]
    expect(row).toMatchObject({ estimated: 1, aborted: 1 })
    // 1 s of audio: 10 tokens (the append's envelope counted as audio too makes it 11 at most).
    expect(Number(row.prompt_tokens)).toBeWithin(10, 12)
    expect(Number(row.cost_micros)).toBe((Number(row.prompt_tokens) + Number(row.completion_tokens)) * 40_000)
  })
})

describe('G.711 clients of a pcm16-only provider', () => {
  let s: RealtimeSetup
  beforeAll(async () => {
    s = await realtimeSetup({ type: 'openai-compatible', providerOptions: { realtime: { audio_formats: ['pcm16'] } } })
    s.fake.formats = ['pcm16'] // it refuses anything else, as such a server does
    s.fake.frequency = 600
  })
  afterAll(() => s.close())

  test('µ-law in and out, converted both ways, frequencies preserved, formats rewritten in the session events', async () => {
    const key = await s.key()
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    c.send({ type: 'session.update', session: { type: 'realtime', audio: { input: { format: { type: 'audio/pcmu' } }, output: { format: { type: 'audio/pcmu' } } } } })
    const updated = await c.next('session.updated')
    expect(updated.session.audio.input.format).toEqual({ type: 'audio/pcmu' })
    expect(updated.session.audio.output.format).toEqual({ type: 'audio/pcmu' })
    const upstream = s.fake.sessions.at(-1)!
    expect(upstream.session.audio.input.format).toEqual({ type: 'audio/pcm', rate: 24000 })
    // One second of a 1 kHz tone, telephony style: 20 ms µ-law frames at 8 kHz.
    const ulaw = pcm16ToMulaw(tone(1000, 1, 8000))
    for (let i = 0; i < ulaw.length; i += 160) c.send({ type: 'input_audio_buffer.append', audio: Buffer.from(ulaw.subarray(i, i + 160)).toString('base64') })
    c.send({ type: 'input_audio_buffer.commit' })
    await c.next('input_audio_buffer.committed')
    const received = samplesOf(upstream.audio)
    expect(Math.abs(received.length - 24_000)).toBeLessThan(100)
    expect(Math.abs(dominantFrequency(received.subarray(2400), 24_000) - 1000)).toBeLessThanOrEqual(10)
    c.send({ type: 'response.create' })
    await c.next('response.done')
    const out = c.events.filter((e) => e.type === 'response.output_audio.delta').map((e) => Buffer.from(e.delta, 'base64'))
    const decoded = mulawToPcm16(Buffer.concat(out))
    expect(Math.abs(decoded.length - 4000)).toBeLessThan(50) // 0.5 s at 8 kHz, one byte a sample
    expect(Math.abs(dominantFrequency(decoded.subarray(400), 8000) - 600)).toBeLessThanOrEqual(10)
    c.ws.close()
  })
})

describe('a key revoked mid-session on another instance', () => {
  let fake: FakeRealtime
  let instances: Instance[]
  let database: Awaited<ReturnType<typeof createTestDatabase>>
  beforeAll(async () => {
    fake = await startFakeRealtime()
    database = await createTestDatabase()
    instances = await startInstances(2, { DATABASE_URL: database.url, REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379' })
  }, 30_000)
  afterAll(async () => {
    await Promise.all(instances.map((i) => i.stop()))
    await database.drop()
    fake.close()
  })

  test('disabling the key on instance A ends its session on instance B within a second', async () => {
    const [a, b] = instances as [Instance, Instance]
    await a.admin('POST', '/providers', { name: 'rt', type: 'openai', base_url: fake.url, api_key: fake.key })
    await a.admin('POST', '/models', { name: 'voice', targets: [{ provider: 'rt', model: 'gpt-realtime' }] })
    const created = await a.admin('POST', '/keys', { name: 'revoked-later' })
    const c = await EventLog.open(`${b.origin.replace('http', 'ws')}/v1/realtime?model=voice`, { headers: bearer(created.key) })
    await c.next('session.created')
    const at = performance.now()
    await a.admin('PATCH', `/keys/${created.id}`, { enabled: false })
    const closed = await c.waitClosed(1_000)
    expect(closed.code).toBe(1008)
    expect(closed.at - at).toBeLessThan(1_000)
    expect((await c.next('error')).error.code).toBe('invalid_api_key')
    await fake.waitFor(() => fake.sessions.at(-1)!.closed !== null, 1_000)
  })
})
