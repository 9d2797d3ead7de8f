import { describe, expect, test } from 'bun:test'
import { calcPrice, waitForUpdate, type MatchLogic, type Provider } from '@pydantic/genai-prices'
import { CATALOG_FILE, CATALOG_PROVIDERS, generate } from '../../scripts/refresh-prices.ts'
import type { Catalog } from '../../src/pricing/catalog.ts'
import { OVERRIDES, PriceList, costMicros, listPrice, type Price } from '../../src/pricing/prices.ts'

/**
 * Our prices against the package they come from: whatever @pydantic/genai-prices charges for a model (its own
 * calcPrice, at a given time), listPrice must charge the same. Nothing here repeats a catalog price by hand.
 */
const catalogProviders = (await waitForUpdate())!
const catalogOf = (type: string): Provider => catalogProviders.find((p) => p.id === CATALOG_PROVIDERS[type])!

/** Usages that isolate each price: prompt only, prompt all read from cache, all written to cache, completion only. */
const USAGES = [
  { ours: { prompt_tokens: 1000, completion_tokens: 0 }, theirs: { input_tokens: 1000 } },
  { ours: { prompt_tokens: 1000, completion_tokens: 0, cached_tokens: 1000 }, theirs: { input_tokens: 1000, cache_read_tokens: 1000 } },
  { ours: { prompt_tokens: 1000, completion_tokens: 0, cache_write_tokens: 1000 }, theirs: { input_tokens: 1000, cache_write_tokens: 1000 } },
  { ours: { prompt_tokens: 0, completion_tokens: 1000 }, theirs: { output_tokens: 1000 } },
]
/** Now, and moments either side of the catalog's dated prices and inside and outside its hours-of-the-day prices. */
const MOMENTS = [Date.now(), Date.parse('2025-01-01T03:00:00Z'), Date.parse('2026-02-01T16:30:00Z'), Date.parse('2026-06-01T12:00:00Z'), Date.parse('2027-03-01T20:00:00Z')]

/** The catalog's price of a model at a moment, in the micro-dollars of each usage, or null when it has none. */
function theirCosts(type: string, model: string, at: number): number[] | null {
  const results = USAGES.map((u) => calcPrice(u.theirs, model, { providerId: CATALOG_PROVIDERS[type]!, timestamp: new Date(at) }))
  return results[0] ? results.map((r) => r!.total_price * 1e6) : null
}

function expectSamePrice(type: string, model: string, at: number) {
  const theirs = theirCosts(type, model, at)
  const price = listPrice(type, model, at)
  const where = `${type} ${model} at ${new Date(at).toISOString()}`
  if (!theirs) return expect(price, where).toBeNull()
  if (!price) {
    // Only a model the catalog prices in units we do not bill yet (audio hours, pages…) may be missing.
    const r = calcPrice({}, model, { providerId: CATALOG_PROVIDERS[type]!, timestamp: new Date(at) })!
    expect(['input_mtok', 'output_mtok'].some((k) => k in r.model_price), `${where} is priced in tokens by the catalog`).toBe(false)
    return expect(Object.keys(r.model_price).length, `${where} is free in the catalog`).toBeGreaterThan(0)
  }
  // One ceiling per request: at most one micro-dollar above the catalog's exact figure.
  USAGES.forEach((u, i) => expect(costMicros(price, u.ours) - theirs[i]!, `${where}, usage ${i}`).toBeWithin(-1e-6, 1))
}

/** Ids a rule names literally; regex rules are covered by the samples below. */
function namedIds(rule: MatchLogic): string[] {
  if ('or' in rule) return rule.or.flatMap(namedIds)
  if ('equals' in rule) return [rule.equals]
  if ('starts_with' in rule) return [rule.starts_with]
  if ('ends_with' in rule) return [rule.ends_with]
  if ('contains' in rule) return [rule.contains]
  return []
}

describe('prices from the catalog', () => {
  test('the generated catalog is what the installed package produces (else: bun run prices:refresh)', async () => {
    expect(await Bun.file(CATALOG_FILE).text()).toBe(await generate())
  })

  test('every model each catalog rule names costs what the catalog says, at each moment', () => {
    let checked = 0
    for (const type of Object.keys(CATALOG_PROVIDERS)) {
      const ids = new Set(catalogOf(type).models.flatMap((m) => namedIds(m.match)))
      for (const id of ids) {
        if (OVERRIDES[type]?.[id]) continue
        for (const at of MOMENTS) expectSamePrice(type, id, at)
        checked++
      }
    }
    expect(checked).toBeGreaterThan(1000)
  })

  // Ids clients send, per provider type, including the catalog's regex rules and its own date normalisation.
  const SAMPLES: Record<string, string[]> = {
    openai: ['gpt-4o', 'gpt-4o-2024-08-06', 'gpt-4o-2024-05-13', 'gpt-4o-mini', 'gpt-4.1', 'o4-mini', 'gpt-5', 'text-embedding-3-small', 'gpt-5.6-luna-2026-07-30'],
    anthropic: ['claude-sonnet-4-20250514', 'claude-sonnet-4-5', 'claude-opus-4-1-20250805', 'claude-3-5-haiku-20241022', 'claude-haiku-4-5', 'claude-opus-5-20260101'],
    gemini: ['gemini-2.5-pro', 'gemini-2.5-flash', 'gemini-2.0-flash', 'gemini-3.5-flash-001'],
    bedrock: ['anthropic.claude-3-5-sonnet-20240620-v1:0', 'us.anthropic.claude-sonnet-4-20250514-v1:0', 'meta.llama3-1-70b-instruct-v1:0', 'amazon.nova-pro-v1:0'],
    cohere: ['command-r-plus', 'command-a-03-2025'],
    groq: ['llama-3.3-70b-versatile', 'llama-3.1-8b-instant', 'openai/gpt-oss-120b'],
    together: ['meta-llama/Llama-3.3-70B-Instruct-Turbo'],
    fireworks: ['accounts/fireworks/models/deepseek-v3-0324', 'accounts/fireworks/models/gpt-oss-120b'],
    mistral: ['mistral-large-latest', 'mistral-small-latest', 'mistral-embed'],
    openrouter: ['openai/gpt-4o', 'anthropic/claude-sonnet-4', 'x-ai/grok-4.3-20260101'],
    xai: ['grok-3', 'grok-3-mini', 'grok-4', 'grok-4.3-20260101'],
    deepseek: ['deepseek-chat', 'deepseek-reasoner'],
    cerebras: ['llama-3.3-70b'],
  }
  test.each(Object.entries(SAMPLES))('%s: the ids clients send are priced, as the catalog prices them', (type, ids) => {
    for (const id of ids) {
      expect(listPrice(type, id), `${type} ${id}`).not.toBeNull()
      for (const at of MOMENTS) expectSamePrice(type, id, at)
    }
  })

  test('a price that depends on the hour follows the clock', () => {
    const file = require(CATALOG_FILE) as Catalog
    const hourly = Object.entries(file.providers).flatMap(([type, models]) =>
      models.filter((m) => Array.isArray(m.price) && m.price.some((p) => p.utc)).map((m) => [type, namedIds(m.match as MatchLogic)[0]!] as const),
    )
    expect(hourly.length).toBeGreaterThan(0)
    for (const [type, id] of hourly) {
      const prices = new Set(MOMENTS.map((at) => JSON.stringify(listPrice(type, id, at))))
      expect(prices.size, `${type} ${id}`).toBeGreaterThan(1)
      for (const at of MOMENTS) expectSamePrice(type, id, at)
    }
  })
})

describe('lookup rules', () => {
  const load = () => (require(CATALOG_FILE) as Catalog).providers
  const mine: Price = { input: 7, output: 11, cached_input: 0.5 }

  test('an override wins over the catalog, for its provider type only', () => {
    const prices = new PriceList({ openai: { 'gpt-4o': mine } }, load)
    expect(prices.price('openai', 'gpt-4o')).toEqual(mine)
    expect(prices.price('openai', 'gpt-4o-mini')).toEqual(listPrice('openai', 'gpt-4o-mini')!)
    expect(prices.price('openrouter', 'openai/gpt-4o')).toEqual(listPrice('openrouter', 'openai/gpt-4o')!)
  })

  test("our override table prices what the catalog lacks, and each entry is still missing from it", () => {
    for (const [type, models] of Object.entries(OVERRIDES)) {
      for (const [id, price] of Object.entries(models)) {
        expect(listPrice(type, id)).toEqual(price)
        // When the catalog comes to price it, the entry is reviewed: deleted, or kept with a reason it is wrong.
        if (CATALOG_PROVIDERS[type]) expect(calcPrice({}, id, { providerId: CATALOG_PROVIDERS[type] }), `${type} ${id}`).toBeNull()
      }
    }
  })

  test('a dated id falls back to its other date form, then to its undated id', () => {
    const prices = new PriceList({ vllm: { 'my-model': mine, 'other-2025-01-31': { input: 1, output: 2 } } }, load)
    expect(prices.price('vllm', 'my-model-2025-01-31')).toEqual(mine)
    expect(prices.price('vllm', 'my-model-20250131')).toEqual(mine)
    expect(prices.price('vllm', 'other-20250131')).toEqual({ input: 1, output: 2 })
    expect(prices.price('vllm', 'my-model-2')).toBeNull() // not a date: no prefix guessing
    expect(prices.price('vllm', 'my-model-latest')).toBeNull()
    // A snapshot the catalog does not list yet takes its model's price; one it lists keeps its own.
    expect(calcPrice({}, 'gpt-4.1-2099-12-31', { providerId: 'openai' })).toBeNull()
    expect(listPrice('openai', 'gpt-4.1-2099-12-31')).toEqual(listPrice('openai', 'gpt-4.1')!)
    expect(listPrice('openai', 'gpt-4o-2024-05-13')).not.toEqual(listPrice('openai', 'gpt-4o')!)
  })

  test('unknown models, and models only another provider type serves, have no price', () => {
    expect(listPrice('openai', 'no-such-model')).toBeNull()
    expect(listPrice('groq', 'gpt-4o')).toBeNull()
    expect(listPrice('cerebras', 'claude-sonnet-4-5')).toBeNull()
    // A deployment name, self-hosted servers, and a provider the catalog does not cover.
    for (const type of ['azure', 'ollama', 'vllm', 'openai-compatible', 'deepinfra']) expect(listPrice(type, 'gpt-4o'), type).toBeNull()
  })
})

describe('costMicros', () => {
  test('integer micro-dollars, cached prompt tokens at the cached price, one ceiling', () => {
    const price = { input: 2.5, output: 10, cached_input: 1.25 }
    expect(costMicros(price, { prompt_tokens: 1000, completion_tokens: 100 })).toBe(3500)
    expect(costMicros(price, { prompt_tokens: 1000, completion_tokens: 100, cached_tokens: 400 })).toBe(3000)
    expect(costMicros({ input: 0.15, output: 0.6 }, { prompt_tokens: 3, completion_tokens: 1, cached_tokens: 9 })).toBe(2) // 1.05 → 2; cached capped at the prompt, at input price
    expect(costMicros(null, { prompt_tokens: 1000, completion_tokens: 100 })).toBe(0)
  })
})
