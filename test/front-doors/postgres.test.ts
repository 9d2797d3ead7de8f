import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { SQL } from 'bun'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { FAKE_REPLY as ANTHROPIC_REPLY, startFakeAnthropic, type FakeAnthropic } from '../helpers/fake-anthropic.ts'
import { DEFAULT_REPLY as OPENAI_REPLY, startFakeOpenAI, type FakeOpenAI } from '../helpers/fake-openai.ts'
import { MASTER_KEY, startGateway, type TestGateway } from '../helpers/gateway.ts'
import { createTestDatabase } from '../helpers/postgres.ts'
import { startProcess, stopProcess, type RunningGateway } from '../helpers/process.ts'
import { ResponseStore } from '../../src/core/responses/store.ts'

/**
 * The Responses and Messages front doors on PostgreSQL: responses kept by one gateway are read and continued by
 * another process on the same database, the retention purge removes them, and a Messages call is billed there.
 * The file has a database of its own, dropped at the end.
 */
let openai: FakeOpenAI
let anthropic: FakeAnthropic
let database: Awaited<ReturnType<typeof createTestDatabase>>
/** This file's own connection: what is asserted is what PostgreSQL holds, not what a gateway says. */
let pg: SQL
let gw: TestGateway
/** A second gateway, a separate `bun src/main.ts` process on the same database. */
let other: RunningGateway
let key: string
let client: OpenAI

/** USD per million tokens, i.e. micro-dollars per token. */
const PRICE = { input: 3, output: 15 }
const DAY_MS = 86_400_000

beforeAll(async () => {
  ;[openai, anthropic, database] = await Promise.all([startFakeOpenAI(), startFakeAnthropic(), createTestDatabase()])
  pg = new SQL(database.url)
  gw = await startGateway({ databaseURL: database.url })
  await gw.admin('POST', '/providers', { name: 'openai', type: 'openai', base_url: openai.url, api_key: 'sk-upstream-test' })
  await gw.admin('POST', '/providers', { name: 'claude', type: 'anthropic', base_url: anthropic.url, api_key: 'sk-ant-test' })
  await gw.admin('POST', '/models', { name: 'gpt', targets: [{ provider: 'openai', model: 'gpt-4o', price: PRICE }] })
  await gw.admin('POST', '/models', { name: 'claude', targets: [{ provider: 'claude', model: 'claude-sonnet-4-5', price: PRICE }] })
  key = (await gw.admin('POST', '/keys', { name: 'pg-responses' })).key
  client = new OpenAI({ apiKey: key, baseURL: gw.baseURL, maxRetries: 0 })
  // Started after the catalog is written, so it loads it; the same master key derives the same secret box.
  other = await startProcess({ DATABASE_URL: database.url, CONDUIT_MASTER_KEY: MASTER_KEY, CONDUIT_WORKERS: '1', CONDUIT_DRAIN_MS: '1000' }, [], ['bun', 'src/main.ts'])
}, 30_000)

afterAll(async () => {
  if (other) await stopProcess(other.proc)
  await gw?.close()
  await pg?.close()
  await database?.drop()
  await openai?.stop()
  anthropic?.stop()
}, 30_000)

const storedRows = async (id: string) => {
  const [responses] = await pg`SELECT COUNT(*) AS n FROM stored_responses WHERE id = ${id}`
  const [items] = await pg`SELECT COUNT(*) AS n FROM stored_response_items WHERE response_id = ${id}`
  return { responses: Number(responses.n), items: Number(items.n) }
}

describe('stored responses on PostgreSQL', () => {
  test('create (translated), continue (native), retrieve, input_items, delete; another key gets 404', async () => {
    const first = await client.responses.create({ model: 'claude', input: [{ role: 'user', content: 'My name is Ada.' }, { role: 'user', content: 'Remember it.' }] })
    expect(first.output_text).toBe(ANTHROPIC_REPLY)
    expect(await storedRows(first.id)).toEqual({ responses: 1, items: 3 }) // two input messages, one output message

    const second = await client.responses.create({ model: 'gpt', previous_response_id: first.id, input: 'What is my name?' })
    expect(second.output_text).toBe(OPENAI_REPLY)
    expect(openai.requests.at(-1)!.body.input.map((item: any) => [item.role, item.content[0].text])).toEqual([
      ['user', 'My name is Ada.'],
      ['user', 'Remember it.'],
      ['assistant', ANTHROPIC_REPLY],
      ['user', 'What is my name?'],
    ])

    const fetched = await client.responses.retrieve(second.id)
    expect(fetched.id).toBe(second.id)
    expect(fetched.output_text).toBe(OPENAI_REPLY)
    expect(fetched.previous_response_id).toBe(first.id)
    const items = await client.responses.inputItems.list(first.id, { order: 'asc' })
    expect(items.data.map((item: any) => item.content[0].text)).toEqual(['My name is Ada.', 'Remember it.'])
    const after = await client.responses.inputItems.list(first.id, { order: 'asc', after: items.data[0]!.id })
    expect(after.data.map((item: any) => item.content[0].text)).toEqual(['Remember it.'])

    const stranger = new OpenAI({ apiKey: (await gw.admin('POST', '/keys', { name: 'pg-stranger' })).key, baseURL: gw.baseURL, maxRetries: 0 })
    // One at a time: a refusal made before its handler is attached would be reported as unhandled.
    for (const attempt of [
      () => stranger.responses.retrieve(first.id),
      () => stranger.responses.inputItems.list(first.id),
      () => stranger.responses.delete(first.id),
      () => stranger.responses.create({ model: 'claude', input: 'Hi', previous_response_id: first.id }),
    ]) {
      expect(await attempt().then(() => null, (e) => e)).toBeInstanceOf(OpenAI.NotFoundError)
    }
    expect(await storedRows(first.id)).toEqual({ responses: 1, items: 3 })

    await client.responses.delete(first.id)
    expect(await storedRows(first.id)).toEqual({ responses: 0, items: 0 })
    expect(await client.responses.retrieve(first.id).catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError)
    expect(await client.responses.delete(first.id).catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError)
    // The follow-up carried the conversation itself: deleting its predecessor leaves it whole.
    expect((await client.responses.inputItems.list(second.id)).data.map((item: any) => item.content[0].text)).toEqual(['What is my name?'])
  })

  test('another gateway process on the same database reads, continues and deletes what the first kept', async () => {
    const kept = await client.responses.create({ model: 'claude', input: 'My name is Grace.' })
    const there = new OpenAI({ apiKey: key, baseURL: `${other.origin}/v1`, maxRetries: 0 })
    expect(await there.responses.retrieve(kept.id)).toEqual(await client.responses.retrieve(kept.id))
    const [input] = (await there.responses.inputItems.list(kept.id)).data as any[]
    expect(input.content[0].text).toBe('My name is Grace.')
    // An item_reference to it resolves there too.
    await there.responses.create({ model: 'claude', input: [{ type: 'item_reference', id: input.id }], store: false })
    expect(anthropic.requests.at(-1)!.body.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'My name is Grace.' }] }])

    const followUp = await there.responses.create({ model: 'claude', previous_response_id: kept.id, input: 'And my name?' })
    expect(anthropic.requests.at(-1)!.body.messages.map((m: any) => [m.role, m.content[0].text])).toEqual([
      ['user', 'My name is Grace.'],
      ['assistant', ANTHROPIC_REPLY],
      ['user', 'And my name?'],
    ])
    // And back: what the second process kept, the first reads.
    expect((await client.responses.retrieve(followUp.id)).previous_response_id).toBe(kept.id)

    const stranger = new OpenAI({ apiKey: (await gw.admin('POST', '/keys', { name: 'pg-stranger-2' })).key, baseURL: `${other.origin}/v1`, maxRetries: 0 })
    expect(await stranger.responses.retrieve(kept.id).catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError)

    await there.responses.delete(kept.id)
    expect(await client.responses.retrieve(kept.id).catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError)
  })

  test('streams, native and translated, are kept as they completed and read by the other process', async () => {
    const there = new OpenAI({ apiKey: key, baseURL: `${other.origin}/v1`, maxRetries: 0 })
    for (const model of ['gpt', 'claude']) {
      const streamed = await client.responses.stream({ model, input: 'Hello' }).finalResponse()
      // The store write follows the last event.
      let kept = await there.responses.retrieve(streamed.id).catch((e) => e)
      for (let tries = 0; kept instanceof OpenAI.NotFoundError && tries < 20; tries++) {
        await Bun.sleep(25)
        kept = await there.responses.retrieve(streamed.id).catch((e) => e)
      }
      expect(kept.output_text).toBe(model === 'gpt' ? OPENAI_REPLY : ANTHROPIC_REPLY)
      expect(kept.usage).toEqual(streamed.usage)
    }
  })

  test('concurrent creates are written together and each read by the other process', async () => {
    const created = await Promise.all(Array.from({ length: 12 }, (_, i) => client.responses.create({ model: i % 2 ? 'gpt' : 'claude', input: `Question ${i}` })))
    const elsewhere = new OpenAI({ apiKey: key, baseURL: `${other.origin}/v1`, maxRetries: 0 })
    for (const res of created) {
      expect(await storedRows(res.id)).toEqual({ responses: 1, items: 2 })
      expect(await elsewhere.responses.retrieve(res.id)).toEqual(res)
    }
  })

  test('the retention purge, run as of a day past the retention, removes the responses and their items', async () => {
    const res = await client.responses.create({ model: 'gpt', input: 'Hello' })
    expect(await storedRows(res.id)).toEqual({ responses: 1, items: 2 })
    const [{ n: keptBefore }] = await pg`SELECT COUNT(*) AS n FROM stored_responses`
    const retentionDays = 30
    const purger = new ResponseStore(gw.gateway.store, gw.gateway.log, retentionDays)
    try {
      // As of now nothing is old enough; as of a day past the retention, everything this file kept is.
      expect(await purger.purge()).toBe(0)
      expect(await purger.purge(Date.now() + (retentionDays + 1) * DAY_MS)).toBe(Number(keptBefore))
    } finally {
      purger.close()
    }
    expect(await storedRows(res.id)).toEqual({ responses: 0, items: 0 })
    const [{ n: itemsLeft }] = await pg`SELECT COUNT(*) AS n FROM stored_response_items`
    expect(Number(itemsLeft)).toBe(0)
    expect(await client.responses.retrieve(res.id).catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError)
  })
})

test('a /v1/messages call through the Anthropic SDK is billed in PostgreSQL at price × usage', async () => {
  const messages = new Anthropic({ apiKey: key, baseURL: gw.origin, maxRetries: 0 })
  const { data: message, response } = await messages.messages
    .create({ model: 'claude', max_tokens: 100, messages: [{ role: 'user', content: 'Hello' }] })
    .withResponse()
  expect(message.content).toEqual([{ type: 'text', text: ANTHROPIC_REPLY } as any])
  const upstream = anthropic.usageLog.at(-1)!
  expect(message.usage).toMatchObject({ input_tokens: upstream.prompt_tokens, output_tokens: upstream.completion_tokens })

  await gw.gateway.ledger.flush()
  const [row] = await pg`SELECT * FROM spend_ledger WHERE request_id = ${response.headers.get('x-request-id')}`
  const cost = Math.ceil(upstream.prompt_tokens * PRICE.input + upstream.completion_tokens * PRICE.output)
  expect(row).toBeDefined()
  expect({ ...row, prompt_tokens: Number(row.prompt_tokens), completion_tokens: Number(row.completion_tokens), cost_micros: Number(row.cost_micros) }).toMatchObject({
    endpoint: 'messages',
    model: 'claude',
    provider: 'claude',
    prompt_tokens: upstream.prompt_tokens,
    completion_tokens: upstream.completion_tokens,
    cost_micros: cost,
    status: 200,
  })
  expect(response.headers.get('x-conduit-cost-usd')).toBe((cost / 1e6).toFixed(6))
})
