import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { createHash } from 'node:crypto'
import { crc32 } from 'node:zlib'
import { egress, parseAllowList } from '../../src/core/egress.ts'
import { GatewayError, type OpenAIChunk, type SseEvent } from '../../src/plugin-sdk/index.ts'
import { connection, signedHeaders } from '../../src/providers/bedrock/config.ts'
import { buildRequest as buildEmbeddings, parseResponse as parseEmbeddings } from '../../src/providers/bedrock/embeddings.ts'
import { EventStreamFramer, decodeMessage } from '../../src/providers/bedrock/framer.ts'
import plugin from '../../src/providers/bedrock/index.ts'
import { buildRequest } from '../../src/providers/bedrock/request.ts'
import { parseError, parseResponse } from '../../src/providers/bedrock/response.ts'
import { createStreamParser } from '../../src/providers/bedrock/stream.ts'
import { attemptFor, expectGatewayError, registeredAdapter } from '../helpers/adapter.ts'
import {
  FAKE_ACCESS_KEY_ID,
  FAKE_SECRET_ACCESS_KEY,
  encodeFrame,
  eventFrame,
  exceptionFrame,
  startFakeBedrock,
  type FakeBedrock,
} from '../helpers/fake-bedrock.ts'
import { validateSchema } from '../helpers/openapi.ts'
import { CLIENT_MODEL, fixtureBytes, ignoreCreated, relayRecorded, replayEverySplit, type SplitReplayOptions } from '../helpers/relay.ts'

const fixture = await fixtureBytes('bedrock-stream.bin')
const MODEL = 'anthropic.claude-3-5-sonnet-20240620-v1:0'
const EMBED_MODEL = 'amazon.titan-embed-text-v2:0'

// The embeddings fan-out calls the fake through the gateway's egress policy, as a running gateway would.
egress.configure(parseAllowList(process.env.CONDUIT_EGRESS_ALLOW))

const attempt = (body: Record<string, any> = {}, provider: Record<string, any> = {}, model = MODEL) =>
  attemptFor({ name: 'aws', type: 'bedrock', apiKey: `${FAKE_ACCESS_KEY_ID}:${FAKE_SECRET_ACCESS_KEY}`, ...provider }, model, body)

/**
 * Builds the upstream request and resolves to it with its parsed JSON body. Not async: a refused body throws
 * here, synchronously, before any signing, as buildRequest does.
 */
function translate(body: Record<string, any>, provider: Record<string, any> = {}) {
  const ctx = attempt(body, provider)
  return buildRequest(body, ctx).then((upstream) => ({ upstream, json: JSON.parse(upstream.body as string), dropped: ctx.dropped }))
}

const chat = (messages: any[], extra: Record<string, any> = {}) => ({ model: 'virtual', messages, ...extra })


const concat = (parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

describe('plugin', () => {
  test('registers a translating bedrock provider: chat with a framer, embeddings, no completions', async () => {
    const adapter = await registeredAdapter(plugin)
    expect(plugin.name).toBe('provider-bedrock')
    expect(adapter.id).toBe('bedrock')
    expect(adapter.defaultBaseURL).toBe('https://bedrock-runtime.us-east-1.amazonaws.com')
    expect(adapter.chat?.passthrough).toBe(false)
    expect(adapter.chat?.createStreamFramer?.()).toBeInstanceOf(EventStreamFramer)
    // A fresh framer per stream: state never leaks between streams.
    expect(adapter.chat?.createStreamFramer?.()).not.toBe(adapter.chat?.createStreamFramer?.())
    expect(adapter.embeddings?.passthrough).toBe(false)
    expect(adapter.completions).toBeUndefined()
  })
})

describe('SigV4', () => {
  // The AWS SDK's signer does the signing; these check what it is given and what the request carries. The
  // fake (test/helpers/fake-bedrock.ts) verifies the signatures with its own implementation, below.
  const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' }
  const at = new Date(Date.UTC(2015, 7, 30, 12, 36, 0))
  const url = `https://bedrock-runtime.us-east-1.amazonaws.com/model/${encodeURIComponent(MODEL)}/converse`
  const sha256 = (text: string) => createHash('sha256').update(text).digest('hex')

  test('signs host, the body hash and the date, scoped to bedrock in the region; fetch sets Host', async () => {
    const headers = await signedHeaders(url, '{"messages":[]}', credentials, 'us-east-1', at)
    expect(Object.keys(headers).sort()).toEqual(['authorization', 'x-amz-content-sha256', 'x-amz-date'])
    expect(headers['x-amz-date']).toBe('20150830T123600Z')
    expect(headers['x-amz-content-sha256']).toBe(sha256('{"messages":[]}'))
    expect(headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE\/20150830\/us-east-1\/bedrock\/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=[0-9a-f]{64}$/,
    )
  })

  test('the signature depends on the body, the path, the region, the date and the secret, and on nothing else', async () => {
    const signature = async (...args: Parameters<typeof signedHeaders>) => (await signedHeaders(...args)).authorization!.split('Signature=')[1]
    const base = await signature(url, '{}', credentials, 'us-east-1', at)
    expect(await signature(url, '{}', credentials, 'us-east-1', at)).toBe(base)
    const others = [
      await signature(url, '{ }', credentials, 'us-east-1', at),
      await signature(url.replace('/converse', '/converse-stream'), '{}', credentials, 'us-east-1', at),
      await signature(url, '{}', credentials, 'eu-west-1', at),
      await signature(url, '{}', credentials, 'us-east-1', new Date(at.getTime() + 1000)),
      await signature(url, '{}', { ...credentials, secretAccessKey: 'other' }, 'us-east-1', at),
    ]
    expect(new Set([base, ...others]).size).toBe(6)
  })

  test('temporary credentials: the session token is sent and signed', async () => {
    const headers = await signedHeaders(url, '{}', { ...credentials, sessionToken: 'the/token+=' }, 'us-east-1', at)
    expect(headers['x-amz-security-token']).toBe('the/token+=')
    expect(headers.authorization).toContain('SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,')
  })
})

describe('provider configuration', () => {
  const provider = (over: Record<string, any>) => attempt({}, over).target.provider

  test('region: options, else the base_url host, else us-east-1; the URL follows the region', () => {
    expect(connection(provider({}))).toMatchObject({ baseURL: 'https://bedrock-runtime.us-east-1.amazonaws.com', region: 'us-east-1' })
    expect(connection(provider({ options: { region: 'eu-west-3' } }))).toMatchObject({ baseURL: 'https://bedrock-runtime.eu-west-3.amazonaws.com', region: 'eu-west-3' })
    expect(connection(provider({ baseURL: 'https://bedrock-runtime.ap-northeast-1.amazonaws.com/' }))).toMatchObject({
      baseURL: 'https://bedrock-runtime.ap-northeast-1.amazonaws.com',
      region: 'ap-northeast-1',
    })
    expect(connection(provider({ baseURL: 'https://vpce-0abc.bedrock-runtime.eu-central-1.vpce.amazonaws.com' })).region).toBe('eu-central-1')
    expect(connection(provider({ baseURL: 'http://proxy.internal:8080/aws', options: { region: 'us-west-2' } }))).toMatchObject({ baseURL: 'http://proxy.internal:8080/aws', region: 'us-west-2' })
    expect(connection(provider({ baseURL: 'http://proxy.internal:8080' })).region).toBe('us-east-1')
    expectGatewayError(() => connection(provider({ options: { region: 'us-east-1/../x' } })), 500, null, 'provider_misconfigured')
  })

  test('api_key: access key pair, with a session token, or a Bedrock API key', () => {
    expect(connection(provider({ apiKey: 'AKID:secret/+key' })).auth).toEqual({ kind: 'sigv4', credentials: { accessKeyId: 'AKID', secretAccessKey: 'secret/+key' } })
    expect(connection(provider({ apiKey: 'ASIA:secret:tok+/=' })).auth).toEqual({
      kind: 'sigv4',
      credentials: { accessKeyId: 'ASIA', secretAccessKey: 'secret', sessionToken: 'tok+/=' },
    })
    expect(connection(provider({ apiKey: 'ABSKbedrockkey==' })).auth).toEqual({ kind: 'bearer', token: 'ABSKbedrockkey==' })
    expect(connection(provider({ apiKey: null })).auth).toBeNull()
    expectGatewayError(() => connection(provider({ apiKey: 'a:b:c:d' })), 500, null, 'provider_misconfigured')
    expectGatewayError(() => connection(provider({ apiKey: 'a::c' })), 500, null, 'provider_misconfigured')
  })

  test('requests are signed for bedrock in the region; a session token is sent and signed; an API key is a bearer', async () => {
    const { upstream } = await translate(chat([{ role: 'user', content: 'hi' }]), { options: { region: 'eu-west-1' } })
    expect(upstream.url).toBe('https://bedrock-runtime.eu-west-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse')
    expect(upstream.method).toBe('POST')
    expect(upstream.headers['content-type']).toBe('application/json')
    expect(upstream.headers['x-amz-date']).toMatch(/^\d{8}T\d{6}Z$/)
    expect(upstream.headers.authorization).toMatch(
      new RegExp(`^AWS4-HMAC-SHA256 Credential=${FAKE_ACCESS_KEY_ID}/\\d{8}/eu-west-1/bedrock/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=[0-9a-f]{64}$`),
    )
    const temp = (await translate(chat([{ role: 'user', content: 'hi' }]), { apiKey: 'ASIAX:secret:the-token' })).upstream
    expect(temp.headers['x-amz-security-token']).toBe('the-token')
    expect(temp.headers.authorization).toContain('SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token,')
    const bearer = (await translate(chat([{ role: 'user', content: 'hi' }]), { apiKey: 'ABSKkey' })).upstream
    expect(bearer.headers.authorization).toBe('Bearer ABSKkey')
    expect(bearer.headers['x-amz-date']).toBeUndefined()
  })
})

describe('event stream framing', () => {
  // aws-c-event-stream's published test messages: an empty message, a payload-only one, one with a string header.
  const EMPTY = new Uint8Array([0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff])
  const PAYLOAD_ONLY = new Uint8Array([
    0x00, 0x00, 0x00, 0x1d, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x52, 0x8c, 0x5a, ...new TextEncoder().encode("{'foo':'bar'}"), 0xc3, 0x65, 0x39, 0x36,
  ])
  const WITH_HEADER = new Uint8Array([
    0x00, 0x00, 0x00, 0x3d, 0x00, 0x00, 0x00, 0x20, 0x07, 0xfd, 0x83, 0x96, 0x0c, ...new TextEncoder().encode('content-type'), 0x07, 0x00, 0x10,
    ...new TextEncoder().encode('application/json'), ...new TextEncoder().encode("{'foo':'bar'}"), 0x8d, 0x9c, 0x08, 0xb1,
  ])

  test('the published vectors decode, and the fake’s encoder reproduces them byte for byte', () => {
    expect(decodeMessage(EMPTY)).toEqual({ headers: {}, body: new Uint8Array(0) })
    expect(new TextDecoder().decode(decodeMessage(PAYLOAD_ONLY).body)).toBe("{'foo':'bar'}")
    const message = decodeMessage(WITH_HEADER)
    expect(message.headers).toEqual({ 'content-type': { type: 'string', value: 'application/json' } })
    expect(new TextDecoder().decode(message.body)).toBe("{'foo':'bar'}")
    expect(encodeFrame([], '')).toEqual(EMPTY)
    expect(encodeFrame([], "{'foo':'bar'}")).toEqual(PAYLOAD_ONLY)
    expect(encodeFrame([['content-type', 'application/json']], "{'foo':'bar'}")).toEqual(WITH_HEADER)
  })

  test('messages split at any byte, or fed one byte at a time, come out whole and in order', () => {
    const frames = [eventFrame('messageStart', { role: 'assistant' }), eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: '你好 👋' } })]
    const bytes = concat(frames)
    const whole = new EventStreamFramer().push(bytes)
    expect(whole.map((e) => e.event)).toEqual(['messageStart', 'contentBlockDelta'])
    expect(JSON.parse(whole[1]!.data).delta.text).toBe('你好 👋')
    for (let size = 1; size <= bytes.length; size++) {
      const framer = new EventStreamFramer()
      const events: SseEvent[] = []
      for (let i = 0; i < bytes.length; i += size) events.push(...framer.push(bytes.subarray(i, i + size)))
      events.push(...framer.flush())
      expect(events).toEqual(whole)
    }
  })

  test('a message with headers of every type is framed; only the string ones matter to the parser', () => {
    // bool true/false, byte, short, int, long, bytes, timestamp, uuid, then the string headers.
    const extra = concat([
      new Uint8Array([1, 0x61, 0]),
      new Uint8Array([1, 0x62, 1]),
      new Uint8Array([1, 0x63, 2, 0xff]),
      new Uint8Array([1, 0x64, 3, 0x01, 0x00]),
      new Uint8Array([1, 0x65, 4, 0, 0, 1, 0]),
      new Uint8Array([1, 0x66, 5, 0, 0, 0, 0, 0, 0, 0, 7]),
      new Uint8Array([1, 0x67, 6, 0, 2, 9, 9]),
      new Uint8Array([1, 0x68, 8, 0, 0, 1, 0x7f, 0, 0, 0, 0]),
      new Uint8Array([1, 0x69, 9, ...new Array(16).fill(1)]),
    ])
    const base = eventFrame('messageStop', { stopReason: 'end_turn' })
    const headersLength = new DataView(base.buffer).getUint32(4)
    const headers = concat([extra, base.subarray(12, 12 + headersLength)])
    const payload = base.subarray(12 + headersLength, base.length - 4)
    const total = 16 + headers.length + payload.length
    const frame = new Uint8Array(total)
    const view = new DataView(frame.buffer)
    view.setUint32(0, total)
    view.setUint32(4, headers.length)
    view.setUint32(8, crc32(frame.subarray(0, 8)))
    frame.set(headers, 12)
    frame.set(payload, 12 + headers.length)
    view.setUint32(total - 4, crc32(frame.subarray(0, total - 4)))
    const decoded = decodeMessage(frame).headers
    const values = Object.fromEntries(Object.entries(decoded).map(([name, h]) => [name, h.value]))
    expect(values).toMatchObject({ a: true, b: false, c: -1, d: 256, e: 256, ':event-type': 'messageStop' })
    expect(Number(values.f!.valueOf())).toBe(7)
    expect(values.g).toEqual(new Uint8Array([9, 9]))
    expect(values.h).toEqual(new Date(0x17f00000000))
    expect(new EventStreamFramer().push(frame)).toEqual([{ event: 'messageStop', data: expect.stringContaining('"stopReason":"end_turn"') }])
  })

  test('a corrupt prelude or message CRC is a 502, found before the message is buffered', () => {
    // aws-c-event-stream's corrupted-CRC vector: one bit flipped in the prelude CRC.
    const flipped = EMPTY.slice()
    flipped[9] = 0xc3
    expectGatewayError(() => new EventStreamFramer().push(flipped), 502, null, 'upstream_bad_response')
    // A corrupt length is caught by the prelude CRC with only 12 bytes in hand, not after waiting for 4 GB.
    const huge = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0])
    expect(() => new EventStreamFramer().push(huge)).toThrow(/prelude CRC mismatch/)
    const badMessage = eventFrame('messageStart', { role: 'assistant' })
    badMessage[badMessage.length - 20]! ^= 0x01
    expectGatewayError(() => new EventStreamFramer().push(badMessage), 502, null, 'upstream_bad_response')
    expect(() => new EventStreamFramer().push(badMessage)).toThrow(/message checksum/)
    // A well-formed prelude announcing fewer bytes than its own framing.
    const short = new Uint8Array(12)
    new DataView(short.buffer).setUint32(0, 8)
    new DataView(short.buffer).setUint32(8, crc32(short.subarray(0, 8)))
    expect(() => new EventStreamFramer().push(short)).toThrow(/impossible message length/)
  })

  test('a stream ending inside a message is an error at flush; a clean end is not', () => {
    const bytes = concat([eventFrame('messageStart', { role: 'assistant' }), eventFrame('messageStop', { stopReason: 'end_turn' })])
    for (const cut of [1, 11, 12, 13, bytes.length - 1]) {
      const framer = new EventStreamFramer()
      framer.push(bytes.subarray(0, cut))
      expectGatewayError(() => framer.flush(), 502, null, 'upstream_stream_truncated')
    }
    const framer = new EventStreamFramer()
    expect(framer.push(bytes)).toHaveLength(2)
    expect(framer.flush()).toEqual([])
  })

  test('exception and error messages become events the parser turns into errors', () => {
    const exception = new EventStreamFramer().push(exceptionFrame('throttlingException', { message: 'Too many tokens, please wait before trying again.' }))
    expect(exception).toEqual([{ event: 'exception:throttlingException', data: '{"message":"Too many tokens, please wait before trying again."}' }])
    const error = new EventStreamFramer().push(
      encodeFrame(
        [
          [':message-type', 'error'],
          [':error-code', 'InternalFailure'],
          [':error-message', 'An internal error occurred.'],
        ],
        '',
      ),
    )
    expect(error).toEqual([{ event: 'error:InternalFailure', data: '{"message":"An internal error occurred."}' }])
    const empty = new EventStreamFramer().push(encodeFrame([[':message-type', 'exception'], [':exception-type', 'internalServerException']], ''))
    expect(empty).toEqual([{ event: 'exception:internalServerException', data: '{}' }])
  })
})

describe('request translation', () => {
  test('a conversation with no user or assistant turn (a system prompt alone) is refused before it is signed and sent', () => {
    expectGatewayError(() => translate(chat([{ role: 'system', content: 'Be brief.' }])), 400, 'messages')
  })

  test('streaming goes to converse-stream and asks for the event stream; the body is the same', async () => {
    const plain = await translate(chat([{ role: 'user', content: 'hi' }]))
    const streamed = await translate(chat([{ role: 'user', content: 'hi' }], { stream: true, stream_options: { include_usage: true } }))
    expect(streamed.upstream.url).toEndWith('/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream')
    expect(streamed.upstream.headers.accept).toBe('application/vnd.amazon.eventstream')
    expect(streamed.json).toEqual(plain.json)
    expect(streamed.dropped).toEqual([])
    expect(plain.json).toEqual({ messages: [{ role: 'user', content: [{ text: 'hi' }] }] })
  })

  test('system and developer messages → system blocks; same-role turns merge; blank text is left out', async () => {
    const { json } = await translate(
      chat([
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'one' },
        { role: 'developer', content: [{ type: 'text', text: 'Answer in ' }, { type: 'text', text: 'French.' }] },
        { role: 'user', content: [{ type: 'text', text: 'two' }, { type: 'text', text: ' ' }] },
        { role: 'assistant', content: 'deux' },
        { role: 'assistant', content: [{ type: 'text', text: 'trois' }] },
        { role: 'user', content: '' },
      ]),
    )
    expect(json.system).toEqual([{ text: 'You are terse.' }, { text: 'Answer in French.' }])
    expect(json.messages).toEqual([
      { role: 'user', content: [{ text: 'one' }, { text: 'two' }] },
      { role: 'assistant', content: [{ text: 'deux' }, { text: 'trois' }] },
    ])
  })

  test('assistant tool_calls → toolUse blocks; tool messages → one user turn of toolResults', async () => {
    const { json } = await translate(
      chat(
        [
          { role: 'user', content: 'Weather in Paris and Rome?' },
          {
            role: 'assistant',
            content: 'Checking.',
            tool_calls: [
              { id: 'tooluse_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
              { id: 'tooluse_2', type: 'function', function: { name: 'get_weather', arguments: '' } },
            ],
          },
          { role: 'tool', tool_call_id: 'tooluse_1', content: 'sunny' },
          { role: 'tool', tool_call_id: 'tooluse_2', content: [{ type: 'text', text: 'rainy' }] },
          { role: 'user', content: 'Thanks' },
        ],
        { tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }] },
      ),
    )
    expect(json.messages).toEqual([
      { role: 'user', content: [{ text: 'Weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: [
          { text: 'Checking.' },
          { toolUse: { toolUseId: 'tooluse_1', name: 'get_weather', input: { city: 'Paris' } } },
          { toolUse: { toolUseId: 'tooluse_2', name: 'get_weather', input: {} } },
        ],
      },
      {
        role: 'user',
        content: [
          { toolResult: { toolUseId: 'tooluse_1', content: [{ text: 'sunny' }] } },
          { toolResult: { toolUseId: 'tooluse_2', content: [{ text: 'rainy' }] } },
          { text: 'Thanks' },
        ],
      },
    ])
    const bad = chat([{ role: 'user', content: 'x' }, { role: 'assistant', tool_calls: [{ id: 'a', type: 'function', function: { name: 'f', arguments: '[1]' } }] }])
    expectGatewayError(() => translate(bad), 400, 'messages[1].tool_calls', 'invalid_tool_arguments')
  })

  test('a tool result with an image is a toolResult of blocks', async () => {
    const call = { role: 'assistant', content: null, tool_calls: [{ id: 'tooluse_1', type: 'function', function: { name: 'screenshot', arguments: '{}' } }] }
    const tools = { tools: [{ type: 'function', function: { name: 'screenshot', parameters: { type: 'object' } } }] }
    const content = [{ type: 'text', text: 'the screen:' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }]
    const { json } = await translate(chat([{ role: 'user', content: 'Look' }, call, { role: 'tool', tool_call_id: 'tooluse_1', content }], tools))
    expect(json.messages[2]).toEqual({
      role: 'user',
      content: [{ toolResult: { toolUseId: 'tooluse_1', content: [{ text: 'the screen:' }, { image: { format: 'png', source: { bytes: 'iVBORw0KGgo=' } } }] } }],
    })
  })

  test('images: base64 data URLs → image blocks; web URLs and other types are refused, naming the part', async () => {
    const { json } = await translate(
      chat([
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Compare' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,/9j/4AAQ' } },
            { type: 'image_url', image_url: { url: 'data:image/webp;base64,UklGRg==' } },
          ],
        },
      ]),
    )
    expect(json.messages[0].content.slice(1)).toEqual([
      { image: { format: 'png', source: { bytes: 'iVBORw0KGgo=' } } },
      { image: { format: 'jpeg', source: { bytes: '/9j/4AAQ' } } },
      { image: { format: 'webp', source: { bytes: 'UklGRg==' } } },
    ])
    const image = (url: string) => chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }])
    expectGatewayError(() => translate(image('https://example.com/cat.png')), 400, 'messages[0].content[0].image_url.url', 'unsupported_image_url')
    expectGatewayError(() => translate(image('data:image/bmp;base64,Qk0=')), 400, 'messages[0].content[0].image_url.url', 'invalid_image_format')
    expectGatewayError(() => translate(chat([{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'x', format: 'wav' } }] }])), 400, 'messages[0].content[0]', 'unsupported_content')
    expectGatewayError(() => translate(chat([{ role: 'function', content: 'x', name: 'f' }])), 400, 'messages[0].role')
  })

  test('tools → toolConfig; tool_choice auto/required/function/none', async () => {
    const tools = [
      { type: 'function', function: { name: 'get_weather', description: 'Weather by city', parameters: { type: 'object', properties: { city: { type: 'string' } } } } },
      { type: 'function', function: { name: 'now' } },
    ]
    const ask = [{ role: 'user', content: 'hi' }]
    const auto = (await translate(chat(ask, { tools, tool_choice: 'auto' }))).json
    expect(auto.toolConfig).toEqual({
      tools: [
        { toolSpec: { name: 'get_weather', description: 'Weather by city', inputSchema: { json: { type: 'object', properties: { city: { type: 'string' } } } } } },
        { toolSpec: { name: 'now', inputSchema: { json: { type: 'object', properties: {} } } } },
      ],
    })
    expect((await translate(chat(ask, { tools, tool_choice: 'required' }))).json.toolConfig.toolChoice).toEqual({ any: {} })
    expect((await translate(chat(ask, { tools, tool_choice: { type: 'function', function: { name: 'now' } } }))).json.toolConfig.toolChoice).toEqual({ tool: { name: 'now' } })
    // none: no tools at all, unless the history needs a toolConfig; then tool_choice is reported dropped.
    const none = await translate(chat(ask, { tools, tool_choice: 'none' }))
    expect(none.json.toolConfig).toBeUndefined()
    expect(none.dropped).toEqual([])
    const history = [
      ...ask,
      { role: 'assistant', tool_calls: [{ id: 't1', type: 'function', function: { name: 'now', arguments: '{}' } }] },
      { role: 'tool', tool_call_id: 't1', content: 'noon' },
    ]
    const noneWithHistory = await translate(chat(history, { tools, tool_choice: 'none' }))
    expect(noneWithHistory.json.toolConfig.tools).toHaveLength(2)
    expect(noneWithHistory.json.toolConfig.toolChoice).toBeUndefined()
    expect(noneWithHistory.dropped).toEqual(['tool_choice'])
    expect((await translate(chat(ask, { tools, parallel_tool_calls: false }))).dropped).toEqual(['parallel_tool_calls'])
    expect((await translate(chat(ask, { tools, parallel_tool_calls: true }))).dropped).toEqual([])
    expect((await translate(chat(ask, { tools: [{ ...tools[1], function: { name: 'now', strict: true } }] }))).dropped).toEqual(['tools[0].function.strict'])
    expectGatewayError(() => translate(chat(ask, { tools: [{ type: 'custom', custom: { name: 'x' } }] })), 400, 'tools[0]')
    expectGatewayError(() => translate(chat(ask, { tool_choice: 'required' })), 400, 'tool_choice')
  })

  test('inferenceConfig: max tokens precedence, temperature clamped to [0, 1], stop sequences', async () => {
    const m = [{ role: 'user', content: 'hi' }]
    expect((await translate(chat(m, { max_completion_tokens: 10, max_tokens: 20, temperature: 1.7, top_p: 0.9, stop: ['END', 'STOP'] }))).json.inferenceConfig).toEqual({
      maxTokens: 10,
      temperature: 1,
      topP: 0.9,
      stopSequences: ['END', 'STOP'],
    })
    expect((await translate(chat(m, { max_tokens: 20, stop: 'END' }))).json.inferenceConfig).toEqual({ maxTokens: 20, stopSequences: ['END'] })
    expect((await translate(chat(m), { options: { default_max_tokens: 300 } })).json.inferenceConfig).toEqual({ maxTokens: 300 })
    expect((await translate(chat(m))).json.inferenceConfig).toBeUndefined()
  })

  test('fields Converse cannot carry are dropped and reported; n > 1 is refused', async () => {
    const { json, dropped } = await translate(
      chat([{ role: 'user', content: 'hi' }], { seed: 1, logprobs: true, user: 'u1', response_format: { type: 'json_object' }, presence_penalty: 0.5, metadata: { a: 'b' } }),
    )
    expect(dropped.sort()).toEqual(['logprobs', 'metadata', 'presence_penalty', 'response_format', 'seed', 'user'])
    expect(Object.keys(json)).toEqual(['messages'])
    expect((await translate(chat([{ role: 'user', content: 'hi' }], { response_format: { type: 'text' }, n: 1 }))).dropped).toEqual([])
    expectGatewayError(() => translate(chat([{ role: 'user', content: 'hi' }], { n: 2 })), 400, 'n', 'unsupported_parameter')
  })
})

describe('response translation', () => {
  const ctx = attempt()

  test('text and toolUse blocks → message content and tool_calls; usage with cache reads', () => {
    const out = parseResponse(
      {
        output: {
          message: {
            role: 'assistant',
            content: [
              { reasoningContent: { reasoningText: { text: 'thinking…' } } },
              { text: 'Let me check. ' },
              { text: '你好 👋' },
              { toolUse: { toolUseId: 'tooluse_abc', name: 'get_weather', input: { city: 'Paris' } } },
            ],
          },
        },
        stopReason: 'tool_use',
        usage: { inputTokens: 20, outputTokens: 9, totalTokens: 49, cacheReadInputTokens: 15, cacheWriteInputTokens: 5 },
        metrics: { latencyMs: 300 },
      },
      ctx,
    )
    expect(out.object).toBe('chat.completion')
    expect(out.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/)
    expect(out.choices[0].message).toEqual({
      role: 'assistant',
      content: 'Let me check. 你好 👋',
      refusal: null,
      tool_calls: [{ id: 'tooluse_abc', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
    })
    expect(out.choices[0].finish_reason).toBe('tool_calls')
    expect(out.usage).toEqual({ prompt_tokens: 40, completion_tokens: 9, total_tokens: 49, prompt_tokens_details: { cached_tokens: 15, cache_write_tokens: 5 } })
    validateSchema('CreateChatCompletionResponse', out)
    expectGatewayError(() => parseResponse({ nope: true } as any, ctx), 502, null, 'upstream_bad_response')
  })

  test('stop reasons', () => {
    const finish = (stopReason: string) => parseResponse({ output: { message: { role: 'assistant', content: [{ text: 'x' }] } }, stopReason } as any, ctx).choices[0].finish_reason
    expect(finish('end_turn')).toBe('stop')
    expect(finish('stop_sequence')).toBe('stop')
    expect(finish('max_tokens')).toBe('length')
    expect(finish('model_context_window_exceeded')).toBe('length')
    expect(finish('tool_use')).toBe('tool_calls')
    expect(finish('guardrail_intervened')).toBe('content_filter')
    expect(finish('content_filtered')).toBe('content_filter')
    expect(finish('something_new')).toBe('stop')
  })

  test('errors: the x-amzn-ErrorType class decides the status; the message is Bedrock’s', () => {
    const error = (status: number, type: string | null, body: unknown = { message: `${type} happened` }) =>
      parseError(status, body, new Headers(type ? { 'x-amzn-ErrorType': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/` } : {}))
    const cases: [number, string, number, string][] = [
      [400, 'ValidationException', 400, 'invalid_request_error'],
      [403, 'AccessDeniedException', 403, 'permission_error'],
      [403, 'UnrecognizedClientException', 403, 'permission_error'],
      [403, 'InvalidSignatureException', 403, 'permission_error'],
      [404, 'ResourceNotFoundException', 404, 'invalid_request_error'],
      [408, 'ModelTimeoutException', 504, 'server_error'],
      [424, 'ModelErrorException', 502, 'server_error'],
      [429, 'ThrottlingException', 429, 'rate_limit_error'],
      [429, 'ModelNotReadyException', 503, 'server_error'],
      [400, 'ServiceQuotaExceededException', 429, 'insufficient_quota'],
      [500, 'InternalServerException', 500, 'server_error'],
      [503, 'ServiceUnavailableException', 503, 'server_error'],
    ]
    for (const [status, type, expected, openAIType] of cases) {
      const e = error(status, type)
      expect([type, e.status, e.type, e.code, e.message]).toEqual([type, expected, openAIType, type, `${type} happened`])
    }
    // Without the header: the body's __type, then the status alone; unknown model-failure statuses still map.
    expect(parseError(400, { __type: 'com.amazon.coral.validate#ValidationException', Message: 'bad' }, new Headers())).toMatchObject({ status: 400, code: 'ValidationException', message: 'bad' })
    expect(error(424, null, { message: 'model broke' })).toMatchObject({ status: 502, code: null, message: 'model broke' })
    expect(error(502, null, '<html>Bad Gateway</html>')).toMatchObject({ status: 502, message: '<html>Bad Gateway</html>' })
    expect(error(500, null, '').message).toBe('bedrock returned HTTP 500')
  })
})

describe('stream translation', () => {
  const parse = (events: SseEvent[]) => {
    const parser = createStreamParser(attempt())
    return events.flatMap((e) => parser(e) ?? [])
  }
  const framed = (bytes: Uint8Array) => new EventStreamFramer().push(bytes)

  test('the recorded fixture: text with CJK and emoji, a tool call, the finish reason, then usage', () => {
    const chunks = parse(framed(fixture))
    for (const chunk of chunks) validateSchema('CreateChatCompletionStreamResponse', chunk)
    expect(chunks[0]!.choices[0].delta).toEqual({ role: 'assistant', content: '' })
    expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Sure! 你好，世界 🌍 Let me check the weather.')
    const calls = chunks.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? [])
    expect(calls[0]).toEqual({ index: 0, id: 'tooluse_kZJMlvQmRJ6eAyJE5GIl7Q', type: 'function', function: { name: 'get_weather', arguments: '' } })
    expect(calls.map((c: any) => c.function.arguments).join('')).toBe('{"city":"Paris"}')
    expect(calls.every((c: any) => c.index === 0)).toBe(true)
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('tool_calls')
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 540, completion_tokens: 58, total_tokens: 598, prompt_tokens_details: { cached_tokens: 128 } } })
    const ids = new Set(chunks.map((c) => c.id))
    expect(ids.size).toBe(1)
  })

  test('exceptions mid-stream become errors with Bedrock’s message and a status per class', () => {
    const cases: [string, number][] = [
      ['throttlingException', 429],
      ['modelStreamErrorException', 502],
      ['internalServerException', 500],
      ['serviceUnavailableException', 503],
      ['validationException', 400],
      ['modelTimeoutException', 504],
    ]
    for (const [type, status] of cases) {
      const parser = createStreamParser(attempt())
      parser({ event: 'messageStart', data: '{"role":"assistant"}' })
      let thrown: unknown
      try {
        parser({ event: `exception:${type}`, data: JSON.stringify({ message: `${type} mid-stream` }) })
      } catch (error) {
        thrown = error
      }
      expect(GatewayError.is(thrown)).toBe(true)
      expect(thrown).toMatchObject({ status, message: `${type} mid-stream`, code: type[0]!.toUpperCase() + type.slice(1) })
    }
    expect(() => createStreamParser(attempt())({ event: 'contentBlockDelta', data: 'not json' })).toThrow(/not JSON/)
  })

  test('unknown and empty events are skipped; a stream without metadata has no usage chunk', async () => {
    const chunks = parse([
      { event: 'messageStart', data: '{"role":"assistant"}' },
      { event: 'contentBlockDelta', data: '{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"hmm"}}}' },
      { event: 'contentBlockDelta', data: '{"contentBlockIndex":0,"delta":{"text":""}}' },
      { event: 'somethingNew', data: '{}' },
      { event: 'contentBlockStop', data: '{"contentBlockIndex":0}' },
      { event: 'messageStop', data: '{"stopReason":"max_tokens"}' },
    ])
    expect(chunks.map((c) => c.choices[0]?.finish_reason ?? null)).toEqual([null, 'length'])
  })
})

const bedrockChat = (await registeredAdapter(plugin)).chat

describe('the recorded stream through the real relay', () => {
  const relayed = (includeUsage: boolean): SplitReplayOptions => ({
    adapter: bedrockChat,
    includeUsage,
    provider: { type: 'bedrock' },
    upstreamModel: MODEL,
    // Ids and timestamps are per parse; the content must not depend on the split.
    normalise: (text) => ignoreCreated(text).replace(/"id":"chatcmpl-[^"]*"/g, '"id":""'),
  })

  for (const includeUsage of [true, false]) {
    test(`split at every byte offset gives the same chunks (include_usage: ${includeUsage})`, async () => {
      const { text, chunks, outcome } = await replayEverySplit(fixture, relayed(includeUsage))
      expect(chunks.every((c: OpenAIChunk) => c.model === CLIENT_MODEL)).toBe(true)
      expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
      expect(text.includes('"usage"')).toBe(includeUsage)
      expect(outcome.usage).toMatchObject({ prompt_tokens: 540, completion_tokens: 58, total_tokens: 598 })
    }, 60_000)
  }

  test('a stream cut inside a frame ends with an error event, not [DONE]', async () => {
    const { text, outcome } = await relayRecorded([fixture.subarray(0, 500), fixture.subarray(500, fixture.length - 3)], relayed(true))
    expect(text).not.toContain('[DONE]')
    expect(text.trimEnd().split('\n\n').at(-1)).toContain('"code":"upstream_stream_truncated"')
    expect(outcome.error?.status).toBe(502)
  })

  test('a corrupt byte mid-stream ends the stream with an error event', async () => {
    const corrupt = fixture.slice()
    corrupt[1200]! ^= 0xff
    const { text, outcome } = await relayRecorded([corrupt], relayed(true))
    expect(text.trimEnd().split('\n\n').at(-1)).toContain('"code":"upstream_bad_response"')
    expect(outcome.error?.message).toMatch(/CRC mismatch|checksum/)
  })
})

describe('embeddings', () => {
  let fake: FakeBedrock
  beforeAll(async () => {
    fake = await startFakeBedrock()
  })
  afterAll(() => fake.stop())
  const embed = (body: Record<string, any>, provider: Record<string, any> = {}, model = EMBED_MODEL) => {
    const ctx = attempt(body, { baseURL: fake.url, ...provider }, model)
    return { ctx, request: buildEmbeddings(body, ctx) }
  }

  test('one input: a signed InvokeModel request with normalize, dimensions; v1 gets inputText only', async () => {
    const { request, ctx } = embed({ model: 'e', input: 'hello', dimensions: 256, encoding_format: 'base64', user: 'u' })
    const upstream = await request
    expect(upstream.url).toBe(`${fake.url}/model/amazon.titan-embed-text-v2%3A0/invoke`)
    expect(JSON.parse(upstream.body as string)).toEqual({ inputText: 'hello', dimensions: 256, normalize: true })
    expect(upstream.headers.authorization).toContain('/us-east-1/bedrock/aws4_request')
    expect(ctx.dropped).toEqual(['user'])
    const v1 = embed({ model: 'e', input: 'hello', dimensions: 256 }, {}, 'amazon.titan-embed-text-v1')
    expect(JSON.parse((await v1.request).body as string)).toEqual({ inputText: 'hello' })
    expect(v1.ctx.dropped).toEqual(['dimensions'])
    // The request really is what the service takes.
    const res = await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })
    expect(res.status).toBe(200)
    const out = parseEmbeddings((await res.json()) as any, ctx)
    expect(out.data).toHaveLength(1)
    expect(out.data[0].embedding).toHaveLength(256)
    expect(out.usage).toEqual({ prompt_tokens: 2, total_tokens: 2 })
  })

  test('several inputs: one Titan call each, in parallel, combined in order with usage summed', async () => {
    const before = fake.requests.length
    const { request, ctx } = embed({ model: 'e', input: ['alpha', 'beta beta beta', 'gamma'] })
    const upstream = await request
    expect(fake.requests.length - before).toBe(3)
    expect(new Set(fake.requests.slice(before).map((r) => r.headers['x-amzn-trace-id'])).size).toBe(1)
    expect(upstream.url.startsWith('data:application/json;base64,')).toBe(true)
    const res = await fetch(upstream.url, { method: upstream.method })
    const out = parseEmbeddings((await res.json()) as any, ctx)
    expect(out.data.map((d: any) => d.index)).toEqual([0, 1, 2])
    expect(out.data.map((d: any) => d.embedding.length)).toEqual([1024, 1024, 1024])
    expect(out.usage).toEqual({ prompt_tokens: 2 + 4 + 2, total_tokens: 8 })
    validateSchema('CreateEmbeddingResponse', { ...out, model: 'e' })
    expect(fake.usageLog.at(-1)).toEqual({ prompt_tokens: 8, completion_tokens: 0 })
  })

  test('one failed call fails the request as the core would: the class, the retry hint, credentials → 502', async () => {
    const failed = await embed({ model: 'e', input: ['fine', 'fail-429', 'fine too'] }).request.catch((e) => e)
    expect(GatewayError.is(failed)).toBe(true)
    expect(failed).toMatchObject({ status: 429, code: 'ThrottlingException', message: 'Too many requests, please wait before trying again.' })
    const denied = await embed({ model: 'e', input: ['a', 'b'] }, { apiKey: `${FAKE_ACCESS_KEY_ID}:wrong` }).request.catch((e) => e)
    expect(denied).toMatchObject({ status: 502, code: 'upstream_auth_failed' })
    expect(denied.message).not.toContain('signature')
    const unreachable = await embed({ model: 'e', input: ['a', 'b'] }, { baseURL: 'http://127.0.0.1:9' }).request.catch((e) => e)
    expect(unreachable).toMatchObject({ status: 502, code: 'upstream_unreachable' })
  })

  test('a client that leaves stops the fan-out; inputs that are not text are refused', async () => {
    const controller = new AbortController()
    const body = { model: 'e', input: Array.from({ length: 40 }, (_, i) => `text ${i}`) }
    const ctx = attempt(body, { baseURL: fake.url, options: { embedding_concurrency: 2 } }, EMBED_MODEL)
    ;(ctx.request as any).signal = controller.signal
    const before = fake.requests.length
    const pending = buildEmbeddings(body, ctx).catch((e) => e)
    controller.abort()
    expect(await pending).toMatchObject({ status: 499 })
    expect(fake.requests.length - before).toBeLessThan(40)
    // The provider's first-byte timeout bounds the whole fan-out.
    const slowBody = { model: 'e', input: Array.from({ length: 50 }, (_, i) => `text ${i}`) }
    const slow = attempt(slowBody, { baseURL: fake.url, options: { embedding_concurrency: 1, timeouts: { first_byte_ms: 1 } } }, EMBED_MODEL)
    expect(await buildEmbeddings(slowBody, slow).catch((e) => e)).toMatchObject({ status: 504, code: 'upstream_timeout' })
    expect(() => parseEmbeddings(null as any, ctx)).toThrow(/not a Titan embedding/)
    const refused = (input: unknown) => buildEmbeddings({ model: 'e', input }, attempt({}, {}, EMBED_MODEL)).catch((e) => e)
    expect(await refused([[1, 2, 3]])).toMatchObject({ status: 400, param: 'input', code: 'unsupported_value' })
    expect(await refused([])).toMatchObject({ status: 400, param: 'input', code: 'invalid_value' })
  })
})

describe('the fake verifies signatures like AWS', () => {
  let fake: FakeBedrock
  beforeAll(async () => {
    fake = await startFakeBedrock()
  })
  afterAll(() => fake.stop())

  const send = async (over: Record<string, any> = {}, tamper?: (r: { url: string; headers: Record<string, string>; body: string }) => void) => {
    const body = chat([{ role: 'user', content: 'Hello' }])
    const upstream = (await buildRequest(body, attempt(body, { baseURL: fake.url, ...over }))) as { url: string; headers: Record<string, string>; body: string }
    tamper?.(upstream)
    const res = await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })
    return { status: res.status, type: res.headers.get('x-amzn-errortype')?.split(':')[0] ?? null, json: (await res.json()) as any }
  }

  test('a correctly signed request is answered; long-term, temporary and API-key credentials', async () => {
    expect((await send()).status).toBe(200)
    // Headers added after signing (a plugin's, a proxy's) are not signed and do not break the signature.
    expect((await send({}, (r) => void (r.headers['x-plugin-tag'] = 'a'))).status).toBe(200)
    // An inference-profile ARN: its ':' and '/' are encoded once in the URL, twice in the canonical request.
    const arn = 'arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0'
    const body = chat([{ role: 'user', content: 'Hello' }])
    const viaArn = await buildRequest(body, attemptFor({ name: 'aws', type: 'bedrock', apiKey: `${FAKE_ACCESS_KEY_ID}:${FAKE_SECRET_ACCESS_KEY}`, baseURL: fake.url }, arn, body))
    expect(viaArn.url).toContain('/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic')
    expect((await fetch(viaArn.url, { method: 'POST', headers: viaArn.headers, body: viaArn.body })).status).toBe(200)
    const t = fake.temporary
    expect((await send({ apiKey: `${t.accessKeyId}:${t.secretAccessKey}:${t.sessionToken}` })).status).toBe(200)
    expect((await send({ apiKey: fake.apiKey })).status).toBe(200)
  })

  test('refusals carry AWS’s exception and message', async () => {
    const wrongSecret = await send({ apiKey: `${FAKE_ACCESS_KEY_ID}:not-the-secret` })
    expect([wrongSecret.status, wrongSecret.type]).toEqual([403, 'InvalidSignatureException'])
    expect(wrongSecret.json.message).toStartWith('The request signature we calculated does not match the signature you provided.')
    expect(wrongSecret.json.message).toContain('/model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse')
    // Whatever is changed after signing, the signature no longer matches: the body (its signed hash kept or
    // recomputed), the date, the path.
    const tampered = await send({}, (r) => {
      r.body = r.body.replace('Hello', 'Hellp')
    })
    expect(tampered.type).toBe('InvalidSignatureException')
    const rehashed = await send({}, (r) => {
      r.body = r.body.replace('Hello', 'Hellp')
      r.headers['x-amz-content-sha256'] = createHash('sha256').update(r.body).digest('hex')
    })
    expect(rehashed.type).toBe('InvalidSignatureException')
    const redated = await send({}, (r) => {
      // One second later, same minute or not: still well inside the five minutes of allowed skew.
      r.headers['x-amz-date'] = r.headers['x-amz-date']!.replace(/(\d\d)Z$/, (_, sec) => `${String((Number(sec) + 1) % 60).padStart(2, '0')}Z`)
    })
    expect(redated.type).toBe('InvalidSignatureException')
    const moved = await send({}, (r) => {
      r.url = r.url.replace('v1%3A0', 'v2%3A0')
    })
    expect(moved.type).toBe('InvalidSignatureException')
    const tokenSwapped = await send({ apiKey: `${fake.temporary.accessKeyId}:${fake.temporary.secretAccessKey}:${fake.temporary.sessionToken}` }, (r) => {
      r.headers['x-amz-security-token'] = 'another-token'
    })
    expect(tokenSwapped.type).toBe('UnrecognizedClientException')
    const unknown = await send({ apiKey: 'AKIAUNKNOWN000000000:secret' })
    expect([unknown.status, unknown.type, unknown.json.message]).toEqual([403, 'UnrecognizedClientException', 'The security token included in the request is invalid.'])
    const noToken = await send({ apiKey: `${fake.temporary.accessKeyId}:${fake.temporary.secretAccessKey}` })
    expect(noToken.type).toBe('UnrecognizedClientException')
    const region = await send({ options: { region: 'eu-west-1' } })
    expect(region.json.message).toBe('Credential should be scoped to a valid region. ')
    const bearer = await send({ apiKey: 'ABSKnotthekey' })
    expect(bearer.type).toBe('UnrecognizedClientException')
    const unsigned = await send({ apiKey: null })
    expect([unsigned.status, unsigned.type]).toEqual([403, 'MissingAuthenticationTokenException'])
  })

  test('a signature older than five minutes has expired', async () => {
    const skewed = await startFakeBedrock({ now: () => Date.now() + 10 * 60_000 })
    try {
      const body = chat([{ role: 'user', content: 'Hello' }])
      const upstream = await buildRequest(body, attempt(body, { baseURL: skewed.url }))
      const res = await fetch(upstream.url, { method: 'POST', headers: upstream.headers, body: upstream.body })
      expect(res.status).toBe(403)
      expect(((await res.json()) as any).message).toStartWith('Signature expired: ')
    } finally {
      skewed.stop()
    }
  })
})
