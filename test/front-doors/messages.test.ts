import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import Anthropic from '@anthropic-ai/sdk'
import { FAKE_REPLY as ANTHROPIC_REPLY, FAKE_TOOL_INPUT, FAKE_TOOL_RESULT_REPLY, startFakeAnthropic, type FakeAnthropic } from '../helpers/fake-anthropic.ts'
import { FAKE_REPLY as GEMINI_REPLY, FAKE_API_KEY as GEMINI_KEY, startFakeGemini, type FakeGemini } from '../helpers/fake-gemini.ts'
import { DEFAULT_REPLY as OPENAI_REPLY, startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'

/** Anthropic's SDK against the gateway: translated onto OpenAI and Gemini chat, relayed natively to Anthropic. */
let openai: FakeOpenAI
let gemini: FakeGemini
let anthropic: FakeAnthropic
let gw: TestGateway
let key: string
let client: Anthropic

/** USD per million tokens, so costs are exact integers of micro-dollars. */
const PRICE = { input: 3, output: 15, cached_input: 1, cache_write: 4 }
const weatherTool = { name: 'get_weather', description: 'Weather by city', input_schema: { type: 'object' as const, properties: { city: { type: 'string' } }, required: ['city'] } }

beforeAll(async () => {
  ;[openai, gemini, anthropic] = await Promise.all([startFakeOpenAI(), startFakeGemini({ streamChunkBytes: 5 }), startFakeAnthropic({ streamChunkBytes: 7 })])
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'oa', type: 'openai', base_url: openai.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'google', type: 'gemini', base_url: gemini.url, api_key: GEMINI_KEY })
  await gw.admin('POST', '/providers', { name: 'claude', type: 'anthropic', base_url: anthropic.url, api_key: 'sk-ant-test' })
  await gw.admin('POST', '/models', { name: 'gpt', targets: [{ provider: 'oa', model: 'gpt-4o', price: PRICE }] })
  await gw.admin('POST', '/models', { name: 'flash', targets: [{ provider: 'google', model: 'gemini-2.5-flash' }] })
  await gw.admin('POST', '/models', { name: 'sonnet', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5', price: PRICE }] })
  key = (await gw.admin('POST', '/keys', { name: 'messages' })).key
  client = new Anthropic({ apiKey: key, baseURL: gw.origin, maxRetries: 0 })
})

afterAll(async () => {
  await gw.close()
  openai.stop()
  gemini.stop()
  anthropic.stop()
})

const ledgerRow = async (requestId: string) => {
  await gw.gateway.ledger.flush()
  const rows: any[] = await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE request_id = ${requestId}`
  return rows[0] && { ...rows[0], prompt_tokens: Number(rows[0].prompt_tokens), completion_tokens: Number(rows[0].completion_tokens), cost_micros: Number(rows[0].cost_micros) }
}

/** The SSE body as (event name, parsed data) pairs, checking every frame names its type. */
function events(text: string): { event: string; data: any }[] {
  return text
    .split('\n\n')
    .filter((f) => f.trim())
    .map((f) => {
      const event = /^event: (.+)$/m.exec(f)?.[1]
      const data = JSON.parse(/^data: (.+)$/m.exec(f)![1]!)
      expect(event).toBe(data.type)
      return { event: event!, data }
    })
}

/** Anthropic's event grammar: message_start first, then blocks opened, filled and closed in index order, message_delta, message_stop last. */
function expectWellOrdered(list: { event: string; data: any }[]) {
  expect(list[0]!.event).toBe('message_start')
  expect(list.at(-1)!.event).toBe('message_stop')
  expect(list.at(-2)!.event).toBe('message_delta')
  let open: number | null = null
  let next = 0
  for (const { event, data } of list.slice(1, -2)) {
    if (event === 'ping') continue
    if (event === 'content_block_start') {
      expect(open).toBeNull()
      expect(data.index).toBe(next++)
      open = data.index
    } else if (event === 'content_block_delta') expect(data.index).toBe(open!)
    else if (event === 'content_block_stop') {
      expect(data.index).toBe(open!)
      open = null
    } else throw new Error(`unexpected event ${event}`)
  }
  expect(open).toBeNull()
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${gw.origin}${path}`, { method: 'POST', headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })

describe('translated onto chat (OpenAI and Gemini upstreams)', () => {
  test('messages.create: system blocks, metadata, sampling and stop sequences reach the chat body; the answer is a Message', async () => {
    const { data: message, response } = await client.messages
      .create({
        model: 'gpt',
        max_tokens: 200,
        system: [{ type: 'text', text: 'Be brief.' }, { type: 'text', text: 'Be kind.' }],
        metadata: { user_id: 'user-42' },
        stop_sequences: ['END'],
        thinking: { type: 'enabled', budget_tokens: 8000 },
        messages: [{ role: 'user', content: 'Hello' }],
      })
      .withResponse()
    expect(message).toMatchObject({ type: 'message', role: 'assistant', model: 'gpt', stop_reason: 'end_turn', stop_sequence: null })
    expect(message.id).toMatch(/^msg_/)
    expect(message.content).toEqual([{ type: 'text', text: OPENAI_REPLY } as any])
    const sent = openai.requests.at(-1)!.body
    expect(sent).toMatchObject({ model: 'gpt-4o', max_tokens: 200, stop: ['END'], user: 'user-42', reasoning_effort: 'medium' })
    expect(sent.messages).toEqual([
      { role: 'system', content: 'Be brief.\nBe kind.' },
      { role: 'user', content: 'Hello' },
    ])
    const upstream = openai.usageLog.at(-1)!
    expect(message.usage).toMatchObject({ input_tokens: upstream.prompt_tokens, output_tokens: upstream.completion_tokens })

    const row = await ledgerRow(response.headers.get('x-request-id')!)
    const cost = Math.ceil(upstream.prompt_tokens * PRICE.input + upstream.completion_tokens * PRICE.output)
    expect(row).toMatchObject({ model: 'gpt', provider: 'oa', prompt_tokens: upstream.prompt_tokens, completion_tokens: upstream.completion_tokens, cost_micros: cost })
    expect(response.headers.get('x-conduit-cost-usd')).toBe((cost / 1e6).toFixed(6))
  })

  test('sampling parameters (API version 2023-06-01; SDK 1.x no longer types them) reach the chat body; OpenAI, which refuses top_k, gets it dropped and signalled', async () => {
    const res = await post('/v1/messages', { model: 'gpt', max_tokens: 20, temperature: 0.5, top_p: 0.9, top_k: 40, messages: [{ role: 'user', content: 'Hello' }] })
    expect(res.status).toBe(200)
    const sent = openai.requests.at(-1)!.body
    expect(sent).toMatchObject({ temperature: 0.5, top_p: 0.9 })
    expect(sent.top_k).toBeUndefined()
    expect(res.headers.get('x-conduit-dropped-params')).toBe('top_k')
    await post('/v1/messages', { model: 'flash', max_tokens: 20, top_k: 40, messages: [{ role: 'user', content: 'Hello' }] })
    expect(gemini.requests.at(-1)!.body.generationConfig).toMatchObject({ topK: 40 })
  })

  test('messages.stream().finalMessage() from OpenAI, events in Anthropic order with usage at the end', async () => {
    const stream = client.messages.stream({ model: 'gpt', max_tokens: 100, messages: [{ role: 'user', content: 'Hello' }] })
    const final = await stream.finalMessage()
    expect(final.content).toEqual([{ type: 'text', text: OPENAI_REPLY } as any])
    expect(final.stop_reason).toBe('end_turn')
    expect(final.usage.output_tokens).toBe(openai.usageLog.at(-1)!.completion_tokens)
    expect(final.usage.input_tokens).toBe(openai.usageLog.at(-1)!.prompt_tokens)

    const res = await post('/v1/messages', { model: 'gpt', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'Hello' }] })
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const list = events(await res.text())
    expectWellOrdered(list)
    expect(list.some((e) => e.event === 'ping')).toBe(true)
    expect(list[0]!.data.message).toMatchObject({ model: 'gpt', role: 'assistant', content: [] })
    expect(list.filter((e) => e.event === 'content_block_delta').map((e) => e.data.delta.text).join('')).toBe(OPENAI_REPLY)
    expect(list.at(-2)!.data).toMatchObject({ delta: { stop_reason: 'end_turn' }, usage: { output_tokens: openai.usageLog.at(-1)!.completion_tokens } })
  })

  test('Gemini: create and stream; a length finish is max_tokens', async () => {
    const created = await client.messages.create({ model: 'flash', max_tokens: 100, messages: [{ role: 'user', content: 'Hello' }] })
    expect(created.content).toEqual([{ type: 'text', text: GEMINI_REPLY } as any])
    const streamed = await client.messages.stream({ model: 'flash', max_tokens: 100, messages: [{ role: 'user', content: 'Hello' }] }).finalMessage()
    expect(streamed.content).toEqual([{ type: 'text', text: GEMINI_REPLY } as any])
    expect(streamed.usage.input_tokens).toBeGreaterThan(0)
    const cut = await client.messages.create({ model: 'gpt', max_tokens: 100, messages: [{ role: 'user', content: 'finish-length' }] })
    expect(cut.stop_reason).toBe('max_tokens')
  })

  for (const model of ['gpt', 'flash']) {
    test(`tool use round trip through ${model}, streamed and not, with tool_choice`, async () => {
      const ask: Anthropic.MessageCreateParamsNonStreaming = {
        model,
        max_tokens: 300,
        tools: [weatherTool],
        tool_choice: { type: 'any', disable_parallel_tool_use: true },
        messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      }
      const first = await client.messages.create(ask)
      expect(first.stop_reason).toBe('tool_use')
      const use = first.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock
      expect(use).toMatchObject({ name: 'get_weather', input: FAKE_TOOL_INPUT })
      expect(use.id.length).toBeGreaterThan(0)

      const streamed = await client.messages.stream(ask).finalMessage()
      expect(streamed.stop_reason).toBe('tool_use')
      const raw = events(await (await post('/v1/messages', { ...ask, stream: true })).text())
      expectWellOrdered(raw)
      expect(raw.find((e) => e.event === 'content_block_start' && e.data.content_block.type === 'tool_use')!.data.content_block).toMatchObject({ name: 'get_weather', input: {} })
      const json = raw.filter((e) => e.data.delta?.type === 'input_json_delta').map((e) => e.data.delta.partial_json)
      expect(JSON.parse(json.join(''))).toEqual(FAKE_TOOL_INPUT)
      expect(streamed.content.find((b) => b.type === 'tool_use')).toMatchObject({ name: 'get_weather', input: FAKE_TOOL_INPUT })

      const answer = await client.messages.create({
        ...ask,
        tool_choice: { type: 'auto' },
        messages: [
          ...ask.messages,
          { role: 'assistant', content: first.content },
          {
            role: 'user',
            content: [{ type: 'tool_result', tool_use_id: use.id, content: [{ type: 'text', text: '{"sky":"sunny"}' }] }],
          },
        ],
      })
      expect(answer.stop_reason).toBe('end_turn')
      expect((answer.content[0] as Anthropic.TextBlock).text).toBe('The weather in Paris is sunny.')
      if (model === 'gpt') {
        const sent = openai.requests.at(-1)!.body
        expect(sent.tool_choice).toBe('auto')
        expect(sent.tools[0]).toEqual({ type: 'function', function: { name: 'get_weather', description: 'Weather by city', parameters: weatherTool.input_schema } })
        expect(sent.messages.slice(1)).toEqual([
          { role: 'assistant', content: null, tool_calls: [{ id: use.id, type: 'function', function: { name: 'get_weather', arguments: JSON.stringify(FAKE_TOOL_INPUT) } }] },
          { role: 'tool', tool_call_id: use.id, content: '{"sky":"sunny"}' },
        ])
        const forced = openai.requests.findLast((r) => r.body?.tool_choice === 'required')!.body
        expect(forced.parallel_tool_calls).toBe(false)
      }
    })
  }

  test("images (base64 and url sources, a tool result's too) become chat image parts", async () => {
    const png = { type: 'base64' as const, media_type: 'image/png' as const, data: 'iVBORw0KGgo=' }
    await client.messages.create({
      model: 'gpt',
      max_tokens: 50,
      tools: [weatherTool],
      messages: [
        { role: 'assistant', content: [{ type: 'tool_use', id: 'call_1', name: 'get_weather', input: { city: 'Paris' } }] },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'call_1', content: [{ type: 'text', text: 'a map' }, { type: 'image', source: png }] },
            { type: 'text', text: 'And this one?' },
            { type: 'image', source: { type: 'url', url: 'https://example.com/cat.png' } },
          ],
        },
      ],
    })
    expect(openai.requests.at(-1)!.body.messages.slice(1)).toEqual([
      { role: 'tool', tool_call_id: 'call_1', content: 'a map' },
      {
        role: 'user',
        content: [
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          { type: 'text', text: 'And this one?' },
          { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } },
        ],
      },
    ])
  })

  test('tool_choice tool and none map onto chat', async () => {
    await client.messages.create({ model: 'gpt', max_tokens: 50, tools: [weatherTool], tool_choice: { type: 'tool', name: 'get_weather' }, messages: [{ role: 'user', content: 'hi' }] })
    expect(openai.requests.at(-1)!.body.tool_choice).toEqual({ type: 'function', function: { name: 'get_weather' } })
    await client.messages.create({ model: 'gpt', max_tokens: 50, tools: [weatherTool], tool_choice: { type: 'none' }, messages: [{ role: 'user', content: 'hi' }] })
    expect(openai.requests.at(-1)!.body.tool_choice).toBe('none')
  })

  test('a stream that fails mid-way ends with an error event the SDK raises', async () => {
    const res = await post('/v1/messages', { model: 'gpt', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'midstream-error' }] })
    const list = events(await res.text())
    expect(list[0]!.event).toBe('message_start')
    expect(list.at(-1)!.event).toBe('error')
    expect(list.at(-1)!.data.error.type).toMatch(/_error$/)
    expect(list.some((e) => e.event === 'message_stop')).toBe(false)
    const failed = await client.messages.stream({ model: 'gpt', max_tokens: 100, messages: [{ role: 'user', content: 'midstream-error' }] }).finalMessage().catch((e) => e)
    expect(failed).toBeInstanceOf(Anthropic.APIError)
  })

  test('an aborted translated stream is still billed', async () => {
    const res = await post('/v1/messages', { model: 'gpt', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'slow-stream:50' }] })
    const id = res.headers.get('x-request-id')!
    const reader = res.body!.getReader()
    await reader.read()
    await reader.cancel()
    let row: any
    for (let i = 0; i < 40 && !row; i++) {
      row = await ledgerRow(id)
      if (!row) await Bun.sleep(50)
    }
    expect(row).toMatchObject({ model: 'gpt' })
    expect(Number(row.aborted)).toBe(1)
    expect(row.prompt_tokens).toBeGreaterThan(0)
    expect(row.cost_micros).toBe(Math.ceil(row.prompt_tokens * PRICE.input + row.completion_tokens * PRICE.output))
  })
})

describe('native to Anthropic', () => {
  test('create: the body arrives as sent (cache_control intact, model replaced), cache usage priced', async () => {
    const system = [{ type: 'text' as const, text: 'You are a meticulous assistant. '.repeat(20), cache_control: { type: 'ephemeral' as const } }]
    const ask = { model: 'sonnet', max_tokens: 100, system, messages: [{ role: 'user' as const, content: 'Hello' }] }
    const { data: first, response: firstResponse } = await client.messages.create(ask).withResponse()
    const upstream = anthropic.requests.at(-1)!
    expect(upstream.path).toBe('/v1/messages')
    expect(upstream.headers['x-api-key']).toBe('sk-ant-test')
    expect(upstream.headers['anthropic-version']).toBe('2023-06-01')
    expect(upstream.body).toEqual({ ...ask, model: 'claude-sonnet-4-5' })
    expect(first.model).toBe('sonnet')
    expect(first.content).toEqual([{ type: 'text', text: ANTHROPIC_REPLY } as any])
    // The prompt written to the cache is billed at the cache-write price, the rest at the input price.
    const written = first.usage.cache_creation_input_tokens!
    expect(written).toBeGreaterThan(0)
    const firstCost = Math.ceil(first.usage.input_tokens * PRICE.input + written * PRICE.cache_write + first.usage.output_tokens * PRICE.output)
    expect(await ledgerRow(firstResponse.headers.get('x-request-id')!)).toMatchObject({ prompt_tokens: first.usage.input_tokens + written, cost_micros: firstCost })

    const { data: second, response } = await client.messages.create(ask).withResponse()
    const { cache_read_input_tokens: read, input_tokens: input, output_tokens: output } = second.usage
    expect(read).toBe(first.usage.cache_creation_input_tokens)
    const row = await ledgerRow(response.headers.get('x-request-id')!)
    const cost = Math.ceil(input * PRICE.input + read! * PRICE.cached_input + output * PRICE.output)
    expect(row).toMatchObject({ provider: 'claude', prompt_tokens: input + read!, completion_tokens: output, cost_micros: cost })
    expect(response.headers.get('x-conduit-cost-usd')).toBe((cost / 1e6).toFixed(6))
  })

  test('the body goes to Anthropic as the client wrote it, but for the model; a rebuilt one where a hook may edit it', async () => {
    const text = '{"max_tokens": 64,\n "metadata": {"user_id": "u-1"}, "model": "sonnet", "messages": [{"role": "user", "content": "caf\\u00e9 12345678901234567890"}]}'
    const res = await fetch(`${gw.origin}/v1/messages`, { method: 'POST', headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }, body: text })
    expect(res.status).toBe(200)
    expect(anthropic.requests.at(-1)!.text).toBe(text.replace('"sonnet"', '"claude-sonnet-4-5"'))
    // Translated onto OpenAI, the chat body is the gateway's own.
    const translated = await fetch(`${gw.origin}/v1/messages`, { method: 'POST', headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' }, body: text.replace('"sonnet"', '"gpt"') })
    expect(translated.status).toBe(200)
    expect(openai.requests.at(-1)!.body).toMatchObject({ model: 'gpt-4o', max_tokens: 64, messages: [{ role: 'user', content: 'café 12345678901234567890' }] })
  })

  test('stream: relayed event for event with the model renamed; tool use round trip', async () => {
    const final = await client.messages.stream({ model: 'sonnet', max_tokens: 100, messages: [{ role: 'user', content: 'Hello' }] }).finalMessage()
    expect(final.content).toEqual([{ type: 'text', text: ANTHROPIC_REPLY } as any])
    expect(final.model).toBe('sonnet')

    const ask: Anthropic.MessageCreateParamsNonStreaming = { model: 'sonnet', max_tokens: 300, tools: [weatherTool], messages: [{ role: 'user', content: 'What is the weather in Paris?' }] }
    const streamed = await client.messages.stream(ask).finalMessage()
    const use = streamed.content.find((b) => b.type === 'tool_use') as Anthropic.ToolUseBlock
    expect(use.id).toMatch(/^toolu_/)
    expect(use.input).toEqual(FAKE_TOOL_INPUT)
    const answer = await client.messages.create({
      ...ask,
      messages: [...ask.messages, { role: 'assistant', content: streamed.content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny' }] }],
    })
    expect((answer.content[0] as Anthropic.TextBlock).text).toBe(FAKE_TOOL_RESULT_REPLY)
  })

  test('a native stream is billed what Anthropic reported, its cache write at the cache-write price', async () => {
    const system = [{ type: 'text', text: 'Answer in the tone of a ship log. '.repeat(20), cache_control: { type: 'ephemeral' } }]
    const res = await post('/v1/messages', { model: 'sonnet', max_tokens: 100, stream: true, system, messages: [{ role: 'user', content: 'Hello' }] })
    const list = events(await res.text())
    expectWellOrdered(list)
    expect(list[0]!.data.message.model).toBe('sonnet')
    const written = list[0]!.data.message.usage.cache_creation_input_tokens
    expect(written).toBeGreaterThan(0)
    const upstream = anthropic.usageLog.at(-1)!
    const row = await ledgerRow(res.headers.get('x-request-id')!)
    expect(row).toMatchObject({ prompt_tokens: upstream.prompt_tokens, completion_tokens: upstream.completion_tokens })
    expect(row.cost_micros).toBe(Math.ceil((upstream.prompt_tokens - written) * PRICE.input + written * PRICE.cache_write + upstream.completion_tokens * PRICE.output))
  })

  test('a native stream cut by the client is billed the input Anthropic reported and the output it got, estimated', async () => {
    const res = await post('/v1/messages', { model: 'sonnet', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'slow-stream:40' }] })
    const reader = res.body!.getReader()
    let text = ''
    while ((text.match(/event: content_block_delta/g) ?? []).length < 5) text += new TextDecoder().decode((await reader.read()).value)
    await reader.cancel()
    const seen = (text.match(/event: content_block_delta/g) ?? []).length
    const started = events(text.slice(0, text.indexOf('\n\n') + 2))[0]!.data.message.usage
    let row: any
    for (let i = 0; i < 40 && !row; i++) {
      row = await ledgerRow(res.headers.get('x-request-id')!)
      if (!row) await Bun.sleep(50)
    }
    expect(row).toMatchObject({ prompt_tokens: started.input_tokens, aborted: 1, estimated: 1 })
    // message_start's output_tokens (1) is not the answer's: each delta relayed counts, and none of the 15 not sent.
    expect(row.completion_tokens).toBeGreaterThanOrEqual(seen)
    expect(row.completion_tokens).toBeLessThan(20)
    expect(row.cost_micros).toBe(Math.ceil(row.prompt_tokens * PRICE.input + row.completion_tokens * PRICE.output))

    const whole = await post('/v1/messages', { model: 'sonnet', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'slow-stream:1' }] })
    await whole.text()
    expect(await ledgerRow(whole.headers.get('x-request-id')!)).toMatchObject({ completion_tokens: 20, aborted: 0, estimated: 0 })
  })

  test("a native stream's own error event reaches the client as Anthropic sent it", async () => {
    const res = await post('/v1/messages', { model: 'sonnet', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'midstream-error' }] })
    const list = events(await res.text())
    expect(list[0]!.event).toBe('message_start')
    expect(list.at(-1)!.data).toEqual({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } })
    // The request is recorded as the failure it was (overloaded: 503), billed what was relayed.
    let row: any
    for (let i = 0; i < 40 && !row; i++) {
      row = await ledgerRow(res.headers.get('x-request-id')!)
      if (!row) await Bun.sleep(50)
    }
    expect(row).toMatchObject({ status: 503, estimated: 1 })
  })

  test('a native stream the provider cuts mid-way ends with an error event, which the SDK raises as an API error', async () => {
    const res = await post('/v1/messages', { model: 'sonnet', max_tokens: 100, stream: true, messages: [{ role: 'user', content: 'stream-die' }] })
    const list = events(await res.text()) // a reset would throw here
    expect(list[0]!.event).toBe('message_start')
    expect(list.at(-1)!).toMatchObject({ event: 'error', data: { type: 'error', error: { type: 'api_error' } } })
    const failed = await client.messages.stream({ model: 'sonnet', max_tokens: 100, messages: [{ role: 'user', content: 'stream-die' }] }).finalMessage().catch((e) => e)
    expect(failed).toBeInstanceOf(Anthropic.APIError)
  })

  test('anthropic-beta: only allowlisted betas are forwarded', async () => {
    await post(
      '/v1/messages',
      { model: 'sonnet', max_tokens: 50, messages: [{ role: 'user', content: 'Hello' }] },
      { 'anthropic-beta': 'prompt-caching-2024-07-31, files-api-2025-04-14,interleaved-thinking-2025-05-14,context-1m-evil' },
    )
    expect(anthropic.requests.at(-1)!.headers['anthropic-beta']).toBe('prompt-caching-2024-07-31,interleaved-thinking-2025-05-14')
    await post('/v1/messages', { model: 'sonnet', max_tokens: 50, messages: [{ role: 'user', content: 'Hello' }] }, { 'anthropic-beta': 'files-api-2025-04-14' })
    expect(anthropic.requests.at(-1)!.headers['anthropic-beta']).toBeUndefined()
  })

  test("upstream errors keep Anthropic's type; 529 stays 529", async () => {
    const overloaded = await client.messages.create({ model: 'sonnet', max_tokens: 50, messages: [{ role: 'user', content: 'overloaded' }] }).catch((e) => e)
    expect(overloaded).toBeInstanceOf(Anthropic.InternalServerError)
    expect(overloaded.status).toBe(529)
    expect(overloaded.error).toEqual({ type: 'error', error: { type: 'overloaded_error', message: expect.any(String) } })
    const invalid = await client.messages.create({ model: 'sonnet', max_tokens: 50, messages: [{ role: 'user', content: 'fail-400' }] }).catch((e) => e)
    expect(invalid).toBeInstanceOf(Anthropic.BadRequestError)
    expect(invalid.error.error).toEqual({ type: 'invalid_request_error', message: 'messages.0.content: scripted failure (fail-400)' })
  })
})

describe('count_tokens', () => {
  test('an Anthropic model is counted by Anthropic; others and failures by the estimate', async () => {
    const body = { model: 'sonnet', system: 'Be brief.', messages: [{ role: 'user' as const, content: 'How many tokens is this sentence?' }] }
    const created = await client.messages.create({ ...body, max_tokens: 20 })
    const native = await client.messages.countTokens(body)
    expect(native.input_tokens).toBe(created.usage.input_tokens)
    const counted = anthropic.requests.at(-1)!
    expect(counted.path).toBe('/v1/messages/count_tokens')
    expect(counted.body).toEqual({ ...body, model: 'claude-sonnet-4-5' })

    const estimated = await client.messages.countTokens({ ...body, model: 'gpt' })
    expect(estimated.input_tokens).toBeGreaterThan(0)
    expect(estimated.input_tokens).not.toBe(native.input_tokens)
    const before = openai.requests.length
    const fallback = await client.messages.countTokens({ ...body, messages: [{ role: 'user', content: 'fail-500' }] })
    expect(anthropic.requests.at(-1)!.path).toBe('/v1/messages/count_tokens')
    expect(fallback.input_tokens).toBe((await client.messages.countTokens({ ...body, model: 'gpt', messages: [{ role: 'user', content: 'fail-500' }] })).input_tokens)
    expect(openai.requests.length).toBe(before)
  })
})

describe("errors in Anthropic's envelope", () => {
  test('unknown model → NotFoundError, missing max_tokens → BadRequestError, bad key → AuthenticationError', async () => {
    const missing = await client.messages.create({ model: 'no-such-model', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }).catch((e) => e)
    expect(missing).toBeInstanceOf(Anthropic.NotFoundError)
    expect(missing.error).toEqual({ type: 'error', error: { type: 'not_found_error', message: expect.stringContaining('no-such-model') } })

    const res = await post('/v1/messages', { model: 'gpt', messages: [{ role: 'user', content: 'hi' }] })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } })
    const bad = await client.messages.create({ model: 'gpt', max_tokens: 10, messages: [{ role: 'tool' as any, content: 'hi' }] }).catch((e) => e)
    expect(bad).toBeInstanceOf(Anthropic.BadRequestError)
    expect(bad.error.error.message).toContain('messages.0.role')

    // A method the door does not take: its 404 in Anthropic's envelope too (chat's stays OpenAI's).
    for (const path of ['/v1/messages', '/v1/messages/count_tokens']) {
      const wrong = await fetch(`${gw.origin}${path}`, { headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01' } })
      expect(wrong.status).toBe(404)
      expect(await wrong.json()).toEqual({ type: 'error', error: { type: 'not_found_error', message: `Unknown request URL: GET ${path}.` } })
    }
    expect(((await (await fetch(`${gw.origin}/v1/chat/completions`)).json()) as any).error.code).toBe('unknown_url')

    const stranger = new Anthropic({ apiKey: 'condt_not-a-key', baseURL: gw.origin, maxRetries: 0 })
    const denied = await stranger.messages.create({ model: 'gpt', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }).catch((e) => e)
    expect(denied).toBeInstanceOf(Anthropic.AuthenticationError)
    expect(denied.error.error.type).toBe('authentication_error')
  })

  test("what the Messages API refuses is refused here, whichever provider the model goes to, and nothing is sent", async () => {
    const refused: [Record<string, unknown>, string][] = [
      [{ messages: [] }, 'messages: at least one message is required'],
      [{ messages: [{ role: 'system', content: 'Be brief.' }] }, 'messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, not "system" as an input message role.'],
      [{ temperature: 1.5 }, 'temperature: Input should be a valid number from 0 to 1'],
      [{ top_k: 2.5 }, 'top_k: Input should be a valid integer of at least 0'],
      [{ max_tokens: 1e308 }, 'max_tokens: Input should be a valid integer from 1 to 2147483647'],
      [{ tool_choice: { type: 'any' } }, 'tool_choice: may only be specified while providing tools'],
    ]
    for (const model of ['gpt', 'sonnet']) {
      const before = [openai.requests.length, anthropic.requests.length]
      for (const [fields, message] of refused) {
        const res = await post('/v1/messages', { model, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }], ...fields })
        expect(res.status).toBe(400)
        expect(await res.json()).toEqual({ type: 'error', error: { type: 'invalid_request_error', message } })
      }
      expect([openai.requests.length, anthropic.requests.length]).toEqual(before)
    }
  })

  test('a translated upstream rate limit is a RateLimitError with retry-after', async () => {
    const limited = await client.messages.create({ model: 'gpt', max_tokens: 10, messages: [{ role: 'user', content: 'fail-429' }] }).catch((e) => e)
    expect(limited).toBeInstanceOf(Anthropic.RateLimitError)
    expect(limited.error.error.type).toBe('rate_limit_error')
    expect(limited.headers.get('retry-after')).toBe('2')
  })

  test('a spent budget is 402 billing_error, which the SDK does not retry', async () => {
    const broke = (await gw.admin('POST', '/keys', { name: 'broke', budget: { usd: 0.0001, period: 'total' } })).key
    let attempts = 0
    const counted = new Anthropic({ apiKey: broke, baseURL: gw.origin, fetch: (url: any, init: any) => (attempts++, fetch(url, init)) })
    let refused: any
    for (let i = 0; i < 20 && !refused; i++) {
      refused = await counted.messages.create({ model: 'gpt', max_tokens: 3, messages: [{ role: 'user', content: 'finish-length' }] }).then(() => null, (e) => e)
    }
    expect(refused).toBeInstanceOf(Anthropic.APIError)
    expect(refused.status).toBe(402)
    expect(refused.error).toEqual({ type: 'error', error: { type: 'billing_error', message: expect.stringContaining('budget') } })
    const before = attempts
    await counted.messages.create({ model: 'gpt', max_tokens: 3, messages: [{ role: 'user', content: 'hi' }] }).catch(() => {})
    expect(attempts - before).toBe(1)
  })

  test('a key not allowed the messages endpoint gets a PermissionDeniedError', async () => {
    const chatOnly = (await gw.admin('POST', '/keys', { name: 'chat-only', allowed_endpoints: ['chat'] })).key
    const limited = new Anthropic({ apiKey: chatOnly, baseURL: gw.origin, maxRetries: 0 })
    const refused = await limited.messages.create({ model: 'gpt', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }).catch((e) => e)
    expect(refused).toBeInstanceOf(Anthropic.PermissionDeniedError)
    expect(refused.error.error.type).toBe('permission_error')
  })
})

describe("the client's own body, relayed natively", () => {
  test('upstream-URL parameters and deep nesting are refused before anything is sent, as on chat', async () => {
    const before = anthropic.requests.length
    const override = await post('/v1/messages', { model: 'sonnet', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }], api_base: 'http://169.254.169.254/' })
    expect(override.status).toBe(400)
    expect(((await override.json()) as any).error.type).toBe('invalid_request_error')
    const deep = await fetch(`${gw.origin}/v1/messages`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      body: `{"model":"sonnet","max_tokens":10,"messages":[{"role":"user","content":"hi"}],"extra":${'['.repeat(500)}${']'.repeat(500)}}`,
    })
    expect(deep.status).toBe(400)
    expect(anthropic.requests.length).toBe(before)
  })
})
