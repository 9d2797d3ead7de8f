import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import OpenAI from 'openai'
import { FAKE_REPLY as ANTHROPIC_REPLY, FAKE_TOOL_RESULT_REPLY as ANTHROPIC_TOOL_REPLY, startFakeAnthropic, type FakeAnthropic } from '../helpers/fake-anthropic.ts'
import { FAKE_API_KEY as GEMINI_KEY, FAKE_REPLY as GEMINI_REPLY, FAKE_TOOL_RESULT_REPLY as GEMINI_TOOL_REPLY, startFakeGemini, type FakeGemini } from '../helpers/fake-gemini.ts'
import { DEFAULT_REPLY as OPENAI_REPLY, TOOL_CALL_ARGUMENTS, TOOL_RESULT_REPLY as OPENAI_TOOL_REPLY, startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { startGateway, type TestGateway } from '../helpers/gateway.ts'
import { hasSchema, validateSchema } from '../helpers/openapi.ts'
import { ResponseStore } from '../../src/core/responses/store.ts'
import { newId } from '../../src/core/responses/items.ts'
import { SseDecoder } from '../../src/core/sse/decoder.ts'

/**
 * `/v1/responses` through the official openai SDK: relayed to OpenAI's own Responses API (native), translated onto
 * chat for Anthropic, Gemini and an OpenAI-compatible server, with the gateway keeping responses itself.
 */
let openai: FakeOpenAI
let anthropic: FakeAnthropic
let gemini: FakeGemini
let gw: TestGateway
let key: string
let client: OpenAI

/** USD per million tokens, i.e. micro-dollars per token. */
const PRICE = { input: 3, output: 15 }
const weatherTool = {
  type: 'function' as const,
  name: 'get_weather',
  description: 'Weather by city',
  parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
  strict: true,
}

/** Each model, the reply its fake gives, the tool-result reply, and where its fake's requests are recorded. */
const MODELS = {
  gpt: { reply: OPENAI_REPLY, toolReply: OPENAI_TOOL_REPLY, native: true },
  claude: { reply: ANTHROPIC_REPLY, toolReply: ANTHROPIC_TOOL_REPLY, native: false },
  flash: { reply: GEMINI_REPLY, toolReply: GEMINI_TOOL_REPLY, native: false },
  compat: { reply: OPENAI_REPLY, toolReply: OPENAI_TOOL_REPLY, native: false },
} as const
type ModelName = keyof typeof MODELS
const NAMES = Object.keys(MODELS) as ModelName[]

beforeAll(async () => {
  ;[openai, anthropic, gemini] = await Promise.all([startFakeOpenAI(), startFakeAnthropic({ streamChunkBytes: 7 }), startFakeGemini({ streamChunkBytes: 5 })])
  gw = await startGateway()
  await gw.admin('POST', '/providers', { name: 'openai', type: 'openai', base_url: openai.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'compat', type: 'openai-compatible', base_url: openai.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'claude', type: 'anthropic', base_url: anthropic.url, api_key: 'sk-ant-test' })
  await gw.admin('POST', '/providers', { name: 'google', type: 'gemini', base_url: gemini.url, api_key: GEMINI_KEY })
  await gw.admin('POST', '/models', { name: 'gpt', targets: [{ provider: 'openai', model: 'gpt-4o', price: PRICE }] })
  await gw.admin('POST', '/models', { name: 'compat', targets: [{ provider: 'compat', model: 'gpt-4o', price: PRICE }] })
  await gw.admin('POST', '/models', { name: 'claude', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5', price: PRICE }] })
  await gw.admin('POST', '/models', { name: 'flash', targets: [{ provider: 'google', model: 'gemini-2.5-flash', price: PRICE }] })
  key = (await gw.admin('POST', '/keys', { name: 'sdk' })).key
  client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
})

afterAll(async () => {
  await gw.close()
  await openai.stop()
  anthropic.stop()
  gemini.stop()
})

const post = (body: Record<string, unknown>, apiKey = key, signal?: AbortSignal) =>
  fetch(`${gw.baseURL}/responses`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal })

/** Every event of a Responses stream, each checked against the spec, sequence numbers counting from 0. */
function streamEvents(text: string): any[] {
  expect(hasSchema('ResponseStreamEvent')).toBe(true)
  const decoder = new SseDecoder()
  const frames = [...decoder.push(text), ...decoder.flush()].filter((f) => f.data !== '')
  const events = frames.map((frame) => {
    const event = JSON.parse(frame.data)
    expect(frame.event).toBe(event.type)
    validateSchema('ResponseStreamEvent', event)
    return event
  })
  expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i))
  return events
}

const ledgerRow = async (requestId: string) => {
  await gw.gateway.ledger.flush()
  const [row] = await gw.gateway.store.sql`SELECT * FROM spend_ledger WHERE request_id = ${requestId}`
  return row
}

describe.each(NAMES)('%s', (model) => {
  const { reply, toolReply, native } = MODELS[model]

  test('responses.create: the reply, instructions, usage and the virtual model, spec-valid', async () => {
    const { data: res, response } = await client.responses.create({ model, instructions: 'Be brief.', input: 'Hello', max_output_tokens: 200 }).withResponse()
    validateSchema('Response', res)
    expect(res.id).toStartWith('resp_')
    expect(res.model).toBe(model)
    expect(res.status).toBe('completed')
    expect(res.output_text).toBe(reply)
    expect(res.instructions).toBe('Be brief.')
    expect(res.usage!.input_tokens).toBeGreaterThan(0)
    expect(res.usage!.output_tokens).toBeGreaterThan(0)
    expect(res.usage!.total_tokens).toBe(res.usage!.input_tokens + res.usage!.output_tokens)
    const row = await ledgerRow(response.headers.get('x-request-id')!)
    expect(Number(row.prompt_tokens)).toBe(res.usage!.input_tokens)
    expect(Number(row.completion_tokens)).toBe(res.usage!.output_tokens)
    const cost = res.usage!.input_tokens * PRICE.input + res.usage!.output_tokens * PRICE.output
    expect(Number(row.cost_micros)).toBe(cost)
    expect(Math.round(Number(response.headers.get('x-conduit-cost-usd')) * 1e6)).toBe(cost)
  })

  test('responses.stream(...).finalResponse() and the raw events, each spec-valid, in order', async () => {
    const final = await client.responses.stream({ model, input: 'Hello' }).finalResponse()
    expect(final.output_text).toBe(reply)
    expect(final.model).toBe(model)
    validateSchema('Response', final)

    const res = await post({ model, input: 'Hello', stream: true })
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const events = streamEvents(await res.text())
    const types = events.map((e) => e.type)
    expect(types.slice(0, 5)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added', 'response.output_text.delta'])
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed'])
    expect(events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join('')).toBe(reply)
    const completed = events.at(-1).response
    expect(completed.output[0].content[0].text).toBe(reply)
    expect(completed.usage.output_tokens).toBeGreaterThan(0)
    expect(completed.id).toBe(events[0].response.id)
    const row = await ledgerRow(res.headers.get('x-request-id')!)
    expect(Number(row.prompt_tokens)).toBe(completed.usage.input_tokens)
    expect(Number(row.completion_tokens)).toBe(completed.usage.output_tokens)
    expect(Number(row.cost_micros)).toBe(completed.usage.input_tokens * PRICE.input + completed.usage.output_tokens * PRICE.output)
  })

  test('a function call round trip through previous_response_id, streamed and not', async () => {
    const first = await client.responses.create({ model, tools: [weatherTool], input: 'What is the weather in Paris?' })
    validateSchema('Response', first)
    const call = first.output.find((item) => item.type === 'function_call')!
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', status: 'completed' })
    expect(JSON.parse(call.arguments)).toEqual({ city: 'Paris' })

    const streamed = await client.responses.stream({ model, tools: [weatherTool], input: 'What is the weather in Paris?' }).finalResponse()
    const streamedCall = streamed.output.find((item) => item.type === 'function_call')!
    expect(JSON.parse(streamedCall.arguments)).toEqual({ city: 'Paris' })

    const answer = await client.responses.create({
      model,
      tools: [weatherTool],
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"sky":"sunny"}' }],
    })
    validateSchema('Response', answer)
    expect(answer.output_text).toBe(toolReply)
    // A native target never saw the id (it was sent the conversation): its answer names it all the same.
    expect(answer.previous_response_id).toBe(first.id)
    expect((await client.responses.retrieve(answer.id)).previous_response_id).toBe(first.id)

    const streamedAnswer = await client.responses
      .stream({ model, tools: [weatherTool], previous_response_id: streamed.id, input: [{ type: 'function_call_output', call_id: streamedCall.call_id, output: '{"sky":"sunny"}' }] })
      .finalResponse()
    expect(streamedAnswer.output_text).toBe(toolReply)
    if (native) {
      // OpenAI never saw the gateway's previous response: the conversation is sent whole, without its id.
      const sent = openai.requests.at(-1)!.body
      expect(sent.previous_response_id).toBeUndefined()
      expect(sent.input.map((item: any) => item.type ?? 'message')).toEqual(['message', 'function_call', 'function_call_output'])
    }
  })
})

describe('translation of the request', () => {
  test('Anthropic gets the instructions as system, the history as turns, tool calls and results as blocks', async () => {
    const first = await client.responses.create({ model: 'claude', tools: [weatherTool], instructions: 'Be brief.', input: 'What is the weather in Paris?' })
    const call = first.output.find((item) => item.type === 'function_call')!
    await client.responses.create({
      model: 'claude',
      instructions: 'Answer in English.',
      tools: [weatherTool],
      tool_choice: 'auto',
      parallel_tool_calls: false,
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny' }],
    })
    const sent = anthropic.requests.at(-1)!.body
    // Instructions of an earlier response are not carried over, as OpenAI documents.
    expect(sent.system).toBe('Answer in English.')
    expect(sent.tools[0]).toMatchObject({ name: 'get_weather', input_schema: { type: 'object' } })
    expect(sent.tool_choice).toEqual({ type: 'auto', disable_parallel_tool_use: true })
    expect(sent.messages.map((m: any) => m.role)).toEqual(['user', 'assistant', 'user'])
    expect(sent.messages[1].content[0]).toMatchObject({ type: 'tool_use', id: call.call_id, name: 'get_weather', input: { city: 'Paris' } })
    expect(sent.messages[2].content[0]).toMatchObject({ type: 'tool_result', tool_use_id: call.call_id })
  })

  test('an input_file sent as file_data (a PDF) reaches Anthropic as a document block', async () => {
    const file_data = 'data:application/pdf;base64,JVBERi0xLjQK'
    const res = await client.responses.create({
      model: 'claude',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'Summarise' }, { type: 'input_file', filename: 'a.pdf', file_data }] }],
    })
    expect(res.status).toBe('completed')
    expect(anthropic.requests.at(-1)!.body.messages[0].content).toContainEqual({ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQK' } })
  })

  test('a function_call_output with an image (a screenshot tool) reaches Anthropic inside its tool_result', async () => {
    const res = await client.responses.create({
      model: 'claude',
      input: [
        { role: 'user', content: 'What is on my screen?' },
        { type: 'function_call', call_id: 'toolu_shot', name: 'screenshot', arguments: '{}' },
        { type: 'function_call_output', call_id: 'toolu_shot', output: [{ type: 'input_text', text: 'Screen:' }, { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=' }] },
      ],
    })
    expect(res.status).toBe('completed')
    expect(anthropic.requests.at(-1)!.body.messages[2].content).toEqual([
      {
        type: 'tool_result',
        tool_use_id: 'toolu_shot',
        content: [
          { type: 'text', text: 'Screen:' },
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
        ],
      },
    ])
  })

  test('images, developer messages and reasoning effort reach a chat provider in its terms', async () => {
    await client.responses.create({
      model: 'compat',
      reasoning: { effort: 'low' },
      temperature: 0.5,
      top_p: 0.9,
      user: 'end-user-1',
      metadata: { ticket: '42' },
      input: [
        { role: 'developer', content: 'Be terse.' },
        { role: 'user', content: [{ type: 'input_text', text: 'What is this?' }, { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' }] },
      ],
    })
    const sent = openai.requests.at(-1)!
    expect(sent.path).toBe('/v1/chat/completions')
    expect(sent.body).toMatchObject({ reasoning_effort: 'low', temperature: 0.5, top_p: 0.9, user: 'end-user-1' })
    expect(sent.body.messages).toEqual([
      { role: 'system', content: 'Be terse.' },
      { role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' } }] },
    ])
    expect(sent.body.metadata).toBeUndefined()
  })

  test('a finish-length answer is incomplete (max_output_tokens), streamed and not', async () => {
    const res = await client.responses.create({ model: 'claude', input: 'finish-length', max_output_tokens: 3 })
    validateSchema('Response', res)
    expect(res.status).toBe('incomplete')
    expect(res.incomplete_details).toEqual({ reason: 'max_output_tokens' })
    expect(anthropic.requests.at(-1)!.body.max_tokens).toBe(3)
    const events = streamEvents(await (await post({ model: 'flash', input: 'finish-length', stream: true })).text())
    expect(events.at(-1)).toMatchObject({ type: 'response.incomplete', response: { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } } })
  })
})

describe('structured outputs', () => {
  const schema = { type: 'object', properties: { city: { type: 'string' }, celsius: { type: 'number' } }, required: ['city', 'celsius'], additionalProperties: false }
  const format = { type: 'json_schema' as const, name: 'weather', schema, strict: true }

  test.each(['gpt', 'compat'])('%s: text.format json_schema, parsed by the SDK', async (model) => {
    const res = await client.responses.parse({ model, input: 'Weather in Paris as JSON', text: { format } })
    validateSchema('Response', res)
    expect(res.output_parsed).toEqual({ city: 'Paris', celsius: 21 })
    const sent = openai.requests.at(-1)!.body
    if (model === 'gpt') expect(sent.text.format).toEqual(format)
    else expect(sent.response_format).toEqual({ type: 'json_schema', json_schema: { name: 'weather', schema, strict: true } })
  })

  test('Gemini gets the schema as responseJsonSchema', async () => {
    await client.responses.create({ model: 'flash', input: 'Weather in Paris as JSON', text: { format } })
    const config = gemini.requests.at(-1)!.body.generationConfig
    expect(config.responseMimeType).toBe('application/json')
    expect(config.responseJsonSchema).toEqual(schema)
  })
})

describe('stored responses', () => {
  test("ids are 48 hex digits like OpenAI's, unique, and ordered by creation (the stored rows append to their keys)", async () => {
    const created = []
    for (const input of ['One', 'Two', 'Three', 'Four']) {
      created.push(await client.responses.create({ model: 'claude', input }))
      await Bun.sleep(2)
    }
    const ids = created.flatMap((r) => [r.id, ...r.output.map((item) => item.id!)])
    for (const id of ids) expect(id).toMatch(/^(resp|msg)_[0-9a-f]{48}$/)
    expect(new Set(ids).size).toBe(ids.length)
    // Random ids would come out in this order 1 time in 24 for each list.
    for (const list of [created.map((r) => r.id), created.map((r) => r.output[0]!.id!)]) expect(list).toEqual(list.toSorted())
  })

  test('retrieve, input_items (order, limit, after) and delete; another key gets 404 everywhere', async () => {
    const created = await client.responses.create({
      model: 'claude',
      input: [
        { role: 'user', content: 'First' },
        { role: 'assistant', content: 'Noted.' },
        { role: 'user', content: 'Hello' },
      ],
    })
    const fetched = await client.responses.retrieve(created.id)
    validateSchema('Response', fetched)
    expect(fetched).toEqual(created)

    const items = await client.responses.inputItems.list(created.id)
    validateSchema('ResponseItemList', (items as any).body)
    expect(items.data.map((item: any) => item.content[0].text)).toEqual(['Hello', 'Noted.', 'First'])
    const ascending = await client.responses.inputItems.list(created.id, { order: 'asc', limit: 2 })
    expect(ascending.data.map((item: any) => item.content[0].text)).toEqual(['First', 'Noted.'])
    expect(ascending.has_more).toBe(true)
    const rest = await client.responses.inputItems.list(created.id, { order: 'asc', after: ascending.data[1]!.id })
    expect(rest.data.map((item: any) => item.content[0].text)).toEqual(['Hello'])
    expect(rest.has_more).toBe(false)
    const badOrder = await fetch(`${gw.baseURL}/responses/${created.id}/input_items?order=up`, { headers: { authorization: `Bearer ${key}` } })
    expect(badOrder.status).toBe(400)
    expect(((await badOrder.json()) as any).error.param).toBe('order')

    const other = new OpenAI({ apiKey: (await gw.admin('POST', '/keys', { name: 'other' })).key, baseURL: gw.baseURL, maxRetries: 0 })
    // Each started only when awaited: a refusal nobody listens to yet is an unhandled rejection.
    for (const attempt of [
      () => other.responses.retrieve(created.id),
      () => other.responses.inputItems.list(created.id),
      () => other.responses.delete(created.id),
      () => other.responses.create({ model: 'claude', input: 'Hi', previous_response_id: created.id }),
    ]) {
      const error = await attempt().then(() => null, (e) => e)
      expect(error).toBeInstanceOf(OpenAI.NotFoundError)
    }
    const refused = await other.responses.create({ model: 'claude', input: 'Hi', previous_response_id: created.id }).catch((e) => e)
    expect(refused.message).toContain(`Previous response with id '${created.id}' not found.`)
    expect(refused.param).toBe('previous_response_id')

    // Items of a kept response can be referenced by the key that made it, and only by it.
    const referenced = await client.responses.create({ model: 'claude', input: [{ type: 'item_reference', id: items.data[0]!.id }] })
    expect(referenced.output_text).toBe(ANTHROPIC_REPLY)
    expect(anthropic.requests.at(-1)!.body.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'Hello' }] }])
    const foreign = await other.responses.create({ model: 'claude', input: [{ type: 'item_reference', id: items.data[0]!.id }] }).catch((e) => e)
    expect(foreign).toBeInstanceOf(OpenAI.NotFoundError)
    expect(foreign.param).toBe('input[0]')

    const deleted = await fetch(`${gw.baseURL}/responses/${created.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${key}` } })
    expect(deleted.status).toBe(200)
    expect(await deleted.json()).toEqual({ id: created.id, object: 'response.deleted', deleted: true })
    expect(await client.responses.retrieve(created.id).catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError)
    expect(await client.responses.delete(created.id).catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError)
  })

  test('store: false keeps nothing; a stream is kept as it completed', async () => {
    const unstored = await client.responses.create({ model: 'flash', input: 'Hello', store: false })
    expect((unstored as unknown as { store: boolean }).store).toBe(false)
    expect(await client.responses.retrieve(unstored.id).catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError)

    const streamed = await client.responses.stream({ model: 'flash', input: 'Hello' }).finalResponse()
    await Bun.sleep(50) // the store write follows the last event
    const kept = await client.responses.retrieve(streamed.id)
    expect(kept.output_text).toBe(GEMINI_REPLY)
    expect(kept.usage).toEqual(streamed.usage)
  })

  test('relayed natively, the body goes on as the client wrote it, but for the model; folded in, it is rebuilt', async () => {
    const text = '{"input": [{"role": "user", "content": "caf\\u00e9"}],\n "seed": 12345678901234567890, "model": "gpt", "store": false}'
    const res = await fetch(`${gw.baseURL}/responses`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: text })
    expect(res.status).toBe(200)
    expect(openai.requests.at(-1)!.text).toBe(text.replace('"gpt"', '"gpt-4o"'))
    const first = await client.responses.create({ model: 'gpt', input: 'My name is Ada.' })
    const second = JSON.stringify({ model: 'gpt', previous_response_id: first.id, input: 'And yours?' })
    expect((await fetch(`${gw.baseURL}/responses`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: second })).status).toBe(200)
    const native = openai.requests.at(-1)!
    expect(native.body.previous_response_id).toBeUndefined()
    expect(native.body.input).toHaveLength(3)
  })

  test('a conversation moves between providers: Anthropic, then OpenAI natively, then Gemini', async () => {
    const first = await client.responses.create({ model: 'claude', input: 'My name is Ada.' })
    const second = await client.responses.create({ model: 'gpt', previous_response_id: first.id, input: 'What is my name?' })
    expect(second.id).toStartWith('resp_')
    const native = openai.requests.at(-1)!.body
    expect(native.previous_response_id).toBeUndefined()
    expect(native.input).toEqual([
      { type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_text', text: 'My name is Ada.' }] },
      { type: 'message', role: 'assistant', status: 'completed', content: [{ type: 'output_text', text: ANTHROPIC_REPLY, annotations: [], logprobs: [] }] },
      { type: 'message', role: 'user', status: 'completed', content: [{ type: 'input_text', text: 'What is my name?' }] },
    ])
    // OpenAI's own response is kept under OpenAI's id, and continued elsewhere.
    expect((await client.responses.retrieve(second.id)).output_text).toBe(OPENAI_REPLY)
    await client.responses.create({ model: 'flash', previous_response_id: second.id, input: 'Thanks.' })
    const turns = gemini.requests.at(-1)!.body.contents
    expect(turns.map((t: any) => [t.role, t.parts[0].text])).toEqual([
      ['user', 'My name is Ada.'],
      ['model', ANTHROPIC_REPLY],
      ['user', 'What is my name?'],
      ['model', OPENAI_REPLY],
      ['user', 'Thanks.'],
    ])
  })

  test('the saves of one turn are written together, each resolving once its response and items can be read', async () => {
    const store = gw.gateway.store
    const kept = new ResponseStore(store, gw.gateway.log, 30)
    const writes: number[] = []
    const write = store.insertStoredResponses.bind(store)
    store.insertStoredResponses = (responses, items) => {
      writes.push(responses.length)
      return write(responses, items)
    }
    const made = () => {
      const input = { id: newId('msg'), type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Hi' }] }
      const id = newId('resp')
      return { id, keyId: 'key-turn', createdAt: Date.now(), response: { id, object: 'response', output: [{ id: newId('msg'), type: 'message' }] }, inputItems: [input], context: [input] }
    }
    try {
      const saved = Array.from({ length: 10 }, made)
      await Promise.all(saved.map((r) => kept.save(r)))
      const alone = made()
      await kept.save(alone)
      expect(writes).toEqual([10, 1])
      for (const r of [...saved, alone]) {
        expect(await kept.get(r.id, 'key-turn')).toEqual(r)
        expect(await kept.item(r.response.output[0]!.id, 'key-turn')).toEqual(r.response.output[0]!)
      }
    } finally {
      store.insertStoredResponses = write
      kept.close()
    }
  })

  test('concurrent creates are each kept, read back and continued', async () => {
    const created = await Promise.all(Array.from({ length: 12 }, (_, i) => client.responses.create({ model: 'claude', input: `Question ${i}` })))
    for (const [i, res] of created.entries()) {
      expect(await client.responses.retrieve(res.id)).toEqual(res)
      expect((await client.responses.inputItems.list(res.id)).data.map((item: any) => item.content[0].text)).toEqual([`Question ${i}`])
    }
    const follow = await client.responses.create({ model: 'claude', previous_response_id: created[7]!.id, input: 'And?' })
    expect(follow.previous_response_id).toBe(created[7]!.id)
  })

  test('responses past responses.retention_days are no longer read, and the purge deletes them', async () => {
    const res = await client.responses.create({ model: 'flash', input: 'Hello' })
    const retentionDays = 30 // the default
    await gw.gateway.store.sql`UPDATE stored_responses SET created_at = ${Date.now() - (retentionDays + 1) * 86_400_000} WHERE id = ${res.id}`
    expect(await client.responses.retrieve(res.id).catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError)
    const purger = new ResponseStore(gw.gateway.store, gw.gateway.log, retentionDays)
    expect(await purger.purge()).toBe(1)
    purger.close()
    const [row] = await gw.gateway.store.sql`SELECT COUNT(*) AS n FROM stored_responses WHERE id = ${res.id}`
    expect(Number(row.n)).toBe(0)
  })
})

describe('errors and billing', () => {
  test('a native answer names the previous response it continues, as OpenAI does, though the target was sent the conversation', async () => {
    const first = await client.responses.create({ model: 'gpt', input: 'Hi' })
    const next = await client.responses.create({ model: 'gpt', input: 'And then?', previous_response_id: first.id })
    expect(next.previous_response_id).toBe(first.id)
    expect(openai.requests.at(-1)!.body.previous_response_id).toBeUndefined()
    const events: any[] = []
    const stream = client.responses.stream({ model: 'gpt', input: 'And then?', previous_response_id: first.id })
    for await (const event of stream) events.push(event)
    expect(events.filter((e) => e.response).map((e) => [e.type, e.response.previous_response_id])).toEqual(
      events.filter((e) => e.response).map((e) => [e.type, first.id]),
    )
    expect(events.some((e) => e.type === 'response.completed')).toBe(true)
  })

  test('a built-in tool on a model without an OpenAI target: 400 naming the tool; an OpenAI model relays it', async () => {
    const refused = await client.responses.create({ model: 'claude', input: 'Search the news', tools: [weatherTool, { type: 'web_search' }] }).catch((e) => e)
    expect(refused).toBeInstanceOf(OpenAI.BadRequestError)
    expect(refused.param).toBe('tools[1]')
    expect(refused.message).toContain("'web_search'")
    validateSchema('ErrorResponse', refused.error ? { error: refused.error } : null)

    const before = openai.requests.length
    await client.responses.create({ model: 'gpt', input: 'Search the news', tools: [{ type: 'web_search' }] })
    expect(openai.requests.length).toBe(before + 1)
    expect(openai.requests.at(-1)!.body.tools).toEqual([{ type: 'web_search' }])
  })

  test('bad requests are 400s naming the param, in OpenAI’s envelope', async () => {
    for (const [body, param] of [
      [{ model: 'claude' }, 'input'],
      [{ model: 'claude', input: 'x', temperature: 3 }, 'temperature'],
      [{ model: 'claude', input: [{ role: 'robot', content: 'x' }] }, 'input[0].role'],
      [{ model: 'claude', input: 'x', text: { format: { type: 'yaml' } } }, 'text.format.type'],
      // A background job ends after its request: neither its answer nor its bill would reach the gateway.
      [{ model: 'gpt', input: 'x', background: true }, 'background'],
    ] as const) {
      const res = await post(body)
      expect(res.status).toBe(400)
      const envelope = (await res.json()) as any
      validateSchema('ErrorResponse', envelope)
      expect(envelope.error.param).toBe(param)
    }
  })

  test('an upstream failure before the answer keeps its status; mid-stream it is response.failed', async () => {
    const failed = await client.responses.create({ model: 'compat', input: 'fail-400' }).catch((e) => e)
    expect(failed).toBeInstanceOf(OpenAI.BadRequestError)
    for (const model of ['compat', 'gpt']) {
      const res = await post({ model, input: 'midstream-error', stream: true })
      const events = streamEvents(await res.text())
      expect(events.at(-1)).toMatchObject({ type: 'response.failed', response: { status: 'failed', error: { code: 'server_error' } } })
      // Recorded as failed, translated or native (where the provider's own response.failed is what says so).
      let row: any
      for (let i = 0; i < 50 && !row; i++) {
        row = await ledgerRow(res.headers.get('x-request-id')!)
        if (!row) await Bun.sleep(20)
      }
      expect(Number(row.status)).toBe(502)
      // Kept as failed, as OpenAI keeps it.
      const kept = await client.responses.retrieve(events.at(-1).response.id)
      expect(kept).toMatchObject({ status: 'failed', error: { code: 'server_error' } })
    }
  })

  test('a stream the provider cuts mid-way ends with response.failed, translated or native, never a reset', async () => {
    for (const model of ['compat', 'gpt']) {
      const res = await post({ model, input: 'stream-die', stream: true })
      const events = streamEvents(await res.text()) // a reset would throw here
      for (const event of events) validateSchema('ResponseStreamEvent', event)
      const last = events.at(-1)
      expect(last).toMatchObject({ type: 'response.failed', response: { status: 'failed', error: { code: 'server_error' } } })
      expect(last.sequence_number).toBe(events.at(-2).sequence_number + 1)
    }
    // The SDK hands the failed response over as the stream's final one, as it does for OpenAI's own.
    const failed = await client.responses.stream({ model: 'gpt', input: 'stream-die' }).finalResponse()
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'server_error' } })
  })

  test('a streamed response is kept by the time its final event arrives: retrieved and continued at once', async () => {
    for (const model of ['compat', 'claude', 'gpt']) {
      for (let i = 0; i < 8; i++) {
        const stream = await client.responses.create({ model, input: 'Hello', stream: true })
        for await (const event of stream) {
          if (event.type !== 'response.completed') continue
          // Before the stream has even ended, as an agent loop continues the moment it reads this event.
          expect((await client.responses.retrieve(event.response.id)).status).toBe('completed')
          const next = await client.responses.create({ model, input: 'And again?', previous_response_id: event.response.id })
          expect(next.status).toBe('completed')
        }
      }
    }
  })

  test('an aborted stream is still billed, translated and native', async () => {
    for (const model of ['compat', 'gpt']) {
      const controller = new AbortController()
      const res = await post({ model, input: 'slow-stream:200', stream: true }, key, controller.signal)
      const reader = res.body!.getReader()
      let text = ''
      const deltas = () => (text.match(/event: response\.output_text\.delta/g) ?? []).length
      while (deltas() < 3) text += new TextDecoder().decode((await reader.read()).value)
      controller.abort()
      await reader.cancel().catch(() => {})
      const requestId = res.headers.get('x-request-id')!
      let row: any
      for (let i = 0; i < 50 && !row; i++) {
        await Bun.sleep(20)
        row = await ledgerRow(requestId)
      }
      expect(row).toBeDefined()
      expect(Number(row.prompt_tokens)).toBeGreaterThan(0)
      // The usage would have come with response.completed: what was relayed is estimated, a token a delta.
      expect(Number(row.completion_tokens)).toBeGreaterThanOrEqual(deltas())
      expect(Number(row.completion_tokens)).toBeLessThan(20)
      expect(Number(row.estimated)).toBe(1)
      expect(Number(row.cost_micros)).toBe(Number(row.prompt_tokens) * PRICE.input + Number(row.completion_tokens) * PRICE.output)
    }
  })
})

describe("the client's own body, relayed natively", () => {
  test('upstream-URL parameters and deep nesting are refused before anything is sent, native target or translated', async () => {
    for (const model of ['gpt', 'claude']) {
      const before = openai.requests.length + anthropic.requests.length
      const override = await post({ model, input: 'hi', metadata_x: { nested: [{ base_url: 'http://10.0.0.1/' }] } })
      expect([model, override.status, ((await override.json()) as any).error.code]).toEqual([model, 400, 'forbidden_parameter'])
      const deep = await fetch(`${gw.baseURL}/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: `{"model":"${model}","input":"hi","extra":${'['.repeat(500)}${']'.repeat(500)}}`,
      })
      expect([model, deep.status, ((await deep.json()) as any).error.code]).toEqual([model, 400, 'invalid_value'])
      expect(openai.requests.length + anthropic.requests.length).toBe(before)
    }
  })
})
