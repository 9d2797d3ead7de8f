import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import net from 'node:net'
import { validateSchema } from '../helpers/openapi.ts'
import { startFakeRealtime } from '../helpers/fake-realtime.ts'
import { EventLog, handshake, realtimeSetup, type RealtimeSetup } from './setup.ts'

/** Sessions minted ahead, refusals before the upgrade, close propagation, failures and limits of the relay. */
let s: RealtimeSetup
let key: string

beforeAll(async () => {
  s = await realtimeSetup({ config: { realtime: { maxBufferedBytes: 256 * 1024, idleTimeoutS: 1 } } })
  key = await s.key()
})
afterAll(() => s.close())

const bearer = (k: string) => ({ authorization: `Bearer ${k}` })
const mint = async (body: unknown, path = '/v1/realtime/sessions', k = key) => {
  const res = await fetch(`${s.origin}${path}`, { method: 'POST', headers: { ...bearer(k), 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return { status: res.status, body: (await res.json()) as any }
}

describe('sessions made ahead', () => {
  test('POST /v1/realtime/sessions: the beta session object with an ephemeral secret; the settings are the first session.update', async () => {
    const { status, body } = await mint({ model: 'voice', instructions: 'Talk like a pirate.', voice: 'verse', input_audio_format: 'pcm16', max_response_output_tokens: 200 })
    expect(status).toBe(200)
    validateSchema('RealtimeSessionCreateRequest', body) // the spec's name for the object with client_secret
    expect(body.model).toBe('voice')
    expect(body.id).toMatch(/^sess_/)
    expect(body.client_secret.value).toMatch(/^ek_/)
    expect(body.client_secret.expires_at - Date.now() / 1000).toBeGreaterThan(50)
    expect(body.client_secret.expires_at - Date.now() / 1000).toBeLessThanOrEqual(60)
    // Stored hashed: the secret itself is nowhere in the database.
    const rows = (await s.gw.gateway.store.sql`SELECT * FROM realtime_sessions WHERE id = ${body.id}`) as any[]
    expect(JSON.stringify(rows)).not.toContain(body.client_secret.value)
    // The browser's way in: the secret in the subprotocol, answered with `realtime`.
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { protocols: ['realtime', `openai-insecure-api-key.${body.client_secret.value}`] })
    expect(c.ws.protocol).toBe('realtime')
    const upstream = s.fake.sessions.at(-1)!
    await s.fake.waitFor(() => upstream.events.length > 0)
    // The client speaks GA here: the beta-shaped settings go up in the GA vocabulary.
    expect(upstream.events[0]).toMatchObject({ type: 'session.update', session: { type: 'realtime', instructions: 'Talk like a pirate.', audio: { output: { voice: 'verse' } }, max_output_tokens: 200 } })
    const updated = await c.next('session.updated')
    expect(updated.session.model).toBe('voice')
    c.ws.close()
    // One secret opens one session.
    const again = await handshake(s.origin, '/v1/realtime?model=voice', { 'sec-websocket-protocol': `realtime, openai-insecure-api-key.${body.client_secret.value}` })
    expect(again.status).toBe(401)
    expect(again.body.error.code).toBe('invalid_api_key')
  })

  test('POST /v1/realtime/client_secrets (GA shape), then /v1/realtime/sessions/{id}/ws with the key that made it', async () => {
    const { status, body } = await mint({ expires_after: { anchor: 'created_at', seconds: 120 }, session: { type: 'realtime', model: 'voice', instructions: 'Hi' } }, '/v1/realtime/client_secrets')
    expect(status).toBe(200)
    validateSchema('RealtimeCreateClientSecretResponse', body)
    expect(body.session.model).toBe('voice')
    expect(body.expires_at - Date.now() / 1000).toBeGreaterThan(100)
    const other = await s.key()
    const stranger = await handshake(s.origin, `/v1/realtime/sessions/${body.session.id}/ws`, bearer(other))
    expect(stranger.status).toBe(404) // another key's session does not exist for this one
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime/sessions/${body.session.id}/ws`, { headers: bearer(key) })
    expect((await c.next('session.updated')).session.instructions).toBe('Hi')
    c.ws.close()
  })

  test('bad session requests are 400 in our envelope', async () => {
    expect((await mint({ voice: 'x' })).body.error).toMatchObject({ code: 'missing_required_parameter', param: 'model' })
    expect((await mint({ model: 'voice', input_audio_format: 'mp3' })).body.error).toMatchObject({
      code: 'invalid_value',
      param: 'input_audio_format',
      message: "Invalid value for 'input_audio_format': expected one of 'pcm16', 'g711_ulaw', 'g711_alaw'.",
    })
    expect((await mint([])).body.error).toMatchObject({ message: 'The request body must be a JSON object.', param: null })
    expect((await mint({ model: 'nope' })).status).toBe(404)
    expect((await mint({ session: { type: 'transcription' } }, '/v1/realtime/client_secrets')).status).toBe(400)
  })
})

describe('refusals before the upgrade, as plain HTTP', () => {
  test('401, 403, 404, 426 and 429 in our envelope', async () => {
    const noKey = await handshake(s.origin, '/v1/realtime?model=voice')
    expect(noKey.status).toBe(401)
    expect(noKey.body.error.type).toBe('authentication_error')
    expect((await handshake(s.origin, '/v1/realtime?model=voice', bearer('condt_wrong'))).status).toBe(401)
    const chatOnly = await s.key({ allowed_endpoints: ['chat'] })
    expect((await handshake(s.origin, '/v1/realtime?model=voice', bearer(chatOnly))).body.error.code).toBe('endpoint_not_allowed')
    const otherModels = await s.key({ allowed_models: ['gpt-4o*'] })
    expect((await handshake(s.origin, '/v1/realtime?model=voice', bearer(otherModels))).status).toBe(403)
    expect((await handshake(s.origin, '/v1/realtime?model=unknown', bearer(key))).status).toBe(404)
    expect((await handshake(s.origin, '/v1/realtime/sessions/sess_nope/ws', bearer(key))).status).toBe(404)
    const plain = await fetch(`${s.origin}/v1/realtime?model=voice`, { headers: bearer(key) })
    expect(plain.status).toBe(426)
    // rpm counts session starts.
    const limited = await s.key({ rpm: 1 })
    const first = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(limited) })
    const second = await handshake(s.origin, '/v1/realtime?model=voice', bearer(limited))
    expect(second.status).toBe(429)
    expect(second.body.error.code).toBe('rate_limit_exceeded')
    expect(second.headers.get('retry-after')).toBeTruthy()
    first.ws.close()
  })

  test("a secret is refused when minted for what would refuse its session: its backend is told, not a browser", async () => {
    // No price for this model and a key with a budget: the session could never be counted, so no secret either.
    await s.gw.admin('POST', '/models', { name: 'voice-own', targets: [{ provider: 'rt', model: 'our-realtime-finetune' }] })
    const budgeted = await s.key({ budget: { usd: 1, period: 'total' } })
    const unpriced = await mint({ session: { type: 'realtime', model: 'voice-own' } }, '/v1/realtime/client_secrets', budgeted)
    expect(unpriced.status).toBe(403)
    validateSchema('ErrorResponse', unpriced.body)
    expect(unpriced.body.error.code).toBe('model_not_priced')
    expect((await mint({ session: { type: 'realtime', model: 'voice' } }, '/v1/realtime/client_secrets', budgeted)).status).toBe(200)
    // A mint is a request of its session: rpm counts it, as it counts the session's start.
    const limited = await s.key({ rpm: 2 })
    const first = await mint({ model: 'voice' }, '/v1/realtime/sessions', limited)
    expect(first.status).toBe(200)
    expect((await mint({ model: 'voice' }, '/v1/realtime/sessions', limited)).status).toBe(200)
    const third = await mint({ model: 'voice' }, '/v1/realtime/sessions', limited)
    expect(third.status).toBe(429)
    expect(third.body.error.code).toBe('rate_limit_exceeded')
  })

  test('max_parallel counts open sessions', async () => {
    const one = await s.key({ max_parallel: 1 })
    const first = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(one) })
    expect((await handshake(s.origin, '/v1/realtime?model=voice', bearer(one))).status).toBe(429)
    first.ws.close()
    await first.waitClosed()
    await Bun.sleep(50)
    const again = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(one) })
    again.ws.close()
  })
})

describe('lifecycle', () => {
  test('the client closing closes the provider within a second, code and reason carried', async () => {
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    const upstream = s.fake.sessions.at(-1)!
    const at = performance.now()
    c.ws.close(4001, 'caller hung up')
    await s.fake.waitFor(() => upstream.closed !== null, 1_000)
    expect(upstream.closed).toEqual({ code: 4001, reason: 'caller hung up' })
    expect(performance.now() - at).toBeLessThan(1_000)
  })

  test('the provider closing closes the client within a second, code and reason carried', async () => {
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    const at = performance.now()
    s.fake.sessions.at(-1)!.ws.close(4002, 'model unloaded')
    const closed = await c.waitClosed(1_000)
    expect(closed).toMatchObject({ code: 4002, reason: 'model unloaded' })
    expect(closed.at - at).toBeLessThan(1_000)
  })

  test('the provider dying mid-session: an error event, then 1011', async () => {
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    s.fake.sessions.at(-1)!.ws.terminate()
    const closed = await c.waitClosed(1_000)
    expect(closed.code).toBe(1011)
    const error = await c.next('error')
    expect(error.error.code).toBe('upstream_closed')
  })

  test('idle sessions end with an error event and 1000', async () => {
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=voice`, { headers: bearer(key) })
    await c.next('session.created')
    const closed = await c.waitClosed(2_500)
    expect(closed).toMatchObject({ code: 1000, reason: 'idle timeout' })
    expect((await c.next('error')).error.code).toBe('session_idle_timeout')
  })

  test('a slow client past the cap: the session ends, an error event and 1008 queued behind what it had not read', async () => {
    // A client that stops reading (node:net's pause): the kernel's buffers fill, then the gateway's.
    const sock = net.connect(Number(new URL(s.origin).port), '127.0.0.1')
    const received: Buffer[] = []
    let paused = false
    sock.on('data', (d: Buffer) => {
      received.push(d)
      if (!paused && Buffer.concat(received).includes('session.created')) {
        paused = true
        sock.pause()
        sock.write(maskedText(JSON.stringify({ type: 'response.create', response: { metadata: { fake_flood_bytes: 48_000 * 600 } } })))
      }
    })
    await new Promise((resolve) => sock.on('connect', resolve))
    sock.write(`GET /v1/realtime?model=voice HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    await s.fake.waitFor(() => paused, 5_000)
    const upstream = s.fake.sessions.at(-1)!
    await s.fake.waitFor(() => upstream.closed !== null, 10_000)
    expect(s.gw.gateway.pipeline.realtime.open).toBe(0)
    await Bun.sleep(250) // the ticker reports the end
    expect(await s.gw.gateway.metricsText()).toContain('conduit_realtime_sessions_ended_total{reason="client_slow"} 1')
    sock.resume()
    const ended = new Promise((resolve) => sock.on('close', resolve))
    await ended
    const frames = parseFrames(Buffer.concat(received))
    const close = frames.at(-1)!
    expect(close.opcode).toBe(8)
    expect(close.payload.readUInt16BE(0)).toBe(1008)
    const last = JSON.parse(frames.at(-2)!.payload.toString())
    expect(last).toMatchObject({ type: 'error', error: { code: 'client_too_slow' } })
    // What waited for the client stayed under the cap (256 KiB here) plus a frame or two.
    const audioBytes = frames.filter((f) => f.opcode === 1).reduce((n, f) => n + f.payload.length, 0)
    expect(audioBytes).toBeLessThan(48_000 * 600 * 4 / 3)
  })

  test('an unreachable provider is a 502 before the upgrade; a slow one a 504; the next target is tried', async () => {
    await s.admin('POST', '/providers', { name: 'down', type: 'openai', base_url: 'http://127.0.0.1:9/v1', api_key: 'sk-x' })
    await s.admin('POST', '/models', { name: 'down-only', targets: [{ provider: 'down', model: 'gpt-realtime' }] })
    const down = await handshake(s.origin, '/v1/realtime?model=down-only', bearer(key))
    expect(down.status).toBe(502)
    expect(down.body.error.code).toBe('upstream_unreachable')
    await s.admin('POST', '/models', { name: 'fallback', targets: [{ provider: 'down', model: 'gpt-realtime', priority: 2 }, { provider: 'rt', model: 'gpt-realtime', priority: 1 }] })
    const c = await EventLog.open(`${s.wsOrigin}/v1/realtime?model=fallback`, { headers: bearer(key) })
    expect((await c.next('session.created')).session.model).toBe('fallback')
    c.ws.close()
    const slow = await startFakeRealtime()
    slow.handshakeDelayMs = 2_000
    try {
      await s.admin('POST', '/providers', { name: 'slow', type: 'openai', base_url: slow.url, api_key: slow.key, options: { timeouts: { connect_ms: 300 } } })
      await s.admin('POST', '/models', { name: 'slow-only', targets: [{ provider: 'slow', model: 'gpt-realtime' }] })
      const at = performance.now()
      const timedOut = await handshake(s.origin, '/v1/realtime?model=slow-only', bearer(key))
      expect(timedOut.status).toBe(504)
      expect(performance.now() - at).toBeLessThan(1_500)
    } finally {
      slow.close()
    }
    // The provider refusing our key is a 502 that does not quote it.
    s.fake.refuseWith = 401
    const refused = await handshake(s.origin, '/v1/realtime?model=voice', bearer(key))
    s.fake.refuseWith = null
    expect(refused.status).toBe(502)
    expect(refused.body.error.code).toBe('upstream_auth_failed')
  })
})

/** A client's text frame (clients mask what they send). */
function maskedText(text: string): Buffer {
  const payload = Buffer.from(text)
  const mask = Buffer.from([1, 2, 3, 4])
  const head = payload.length < 126 ? Buffer.from([0x81, 0x80 | payload.length]) : Buffer.from([0x81, 0x80 | 126, payload.length >> 8, payload.length & 0xff])
  return Buffer.concat([head, mask, payload.map((b, i) => b ^ mask[i % 4]!)])
}

/** The server's frames after the 101 response (unmasked, unfragmented). */
function parseFrames(bytes: Buffer): { opcode: number; payload: Buffer }[] {
  let at = bytes.indexOf('\r\n\r\n') + 4
  const frames = []
  while (at + 2 <= bytes.length) {
    const opcode = bytes[at]! & 0x0f
    let length = bytes[at + 1]! & 0x7f
    let offset = at + 2
    if (length === 126) {
      length = bytes.readUInt16BE(offset)
      offset += 2
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(offset))
      offset += 8
    }
    if (offset + length > bytes.length) break
    frames.push({ opcode, payload: bytes.subarray(offset, offset + length) })
    at = offset + length
  }
  return frames
}
