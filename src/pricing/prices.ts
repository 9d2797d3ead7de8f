/**
 * List prices, USD per million tokens: the maintained catalog (catalog.generated.json, `bun run prices:refresh`)
 * under our own overrides. A model mapping may still set the price of one target (`targets[].price`), e.g. for
 * negotiated rates or self-hosted models; that wins over both.
 */
import type { Price, Usage } from '../plugin-sdk/types.ts'
import { catalogModel, priceAt, type Catalog, type CatalogModel, type DatedPrice } from './catalog.ts'
export type { Price }

/**
 * What the catalog lacks or gets wrong, by provider type then exact model id; each line says why. Reviewed like
 * code: an entry the catalog has come to price correctly is deleted.
 */
export const OVERRIDES: Record<string, Record<string, Price>> = {
  openai: {
    // Not in the catalog: OpenAI's list prices for its per-character speech models.
    'tts-1': { input: 0, output: 0, characters: 15 },
    'tts-1-hd': { input: 0, output: 0, characters: 30 },
  },
  // Not in the catalog: the vendors' pay-as-you-go list prices (elevenlabs.io/pricing/api, deepgram.com/pricing,
  // 2025). Negotiated rates go in a target's `price`. A key ending in `*` prices every model id it starts.
  elevenlabs: {
    'eleven_flash_v2_5': { input: 0, output: 0, characters: 50 },
    'eleven_turbo_v2_5': { input: 0, output: 0, characters: 50 },
    'eleven_multilingual_v2': { input: 0, output: 0, characters: 100 },
    'eleven_v3': { input: 0, output: 0, characters: 100 },
    'scribe_v1': { input: 0, output: 0, audio_hour: 0.4 },
  },
  deepgram: {
    'nova-3*': { input: 0, output: 0, audio_hour: 0.258 },
    'nova-2*': { input: 0, output: 0, audio_hour: 0.258 },
    'aura-2-*': { input: 0, output: 0, characters: 30 },
    'aura-*': { input: 0, output: 0, characters: 15 },
  },
  fireworks: {
    // Not in the catalog; Fireworks' serverless price for models above 16B parameters.
    'accounts/fireworks/models/llama-v3p3-70b-instruct': { input: 0.9, output: 0.9 },
  },
}

/** The catalog's entries per provider type. */
type Providers = Record<string, CatalogModel[] | undefined>

/** A model's date suffix, `-2024-08-06` or `-20240806`. */
const DATE_SUFFIX = /-(20\d\d)-?(0[1-9]|1[0-2])-?(0[1-9]|[12]\d|3[01])$/

/** The id, the same with its date written the other way, then without it: `gpt-4o-20240806` → …-2024-08-06 → gpt-4o. */
function variants(model: string): string[] {
  const date = DATE_SUFFIX.exec(model)
  if (!date) return [model]
  const [suffix, year, month, day] = date
  const base = model.slice(0, -suffix.length)
  const other = suffix.length === 9 ? `${base}-${year}-${month}-${day}` : `${base}-${year}${month}${day}`
  return [model, other, base]
}

/** Lookups by provider type and model, memoised: a target's price is asked for on every request it serves. */
export class PriceList {
  private readonly found = new Map<string, Map<string, Price | DatedPrice[] | null>>()
  private providers: Providers | undefined

  constructor(
    private readonly overrides: Record<string, Record<string, Price>>,
    private readonly load: () => Providers,
  ) {}

  /**
   * The price of a provider's model at `at`, or null when nobody set one: the override, else the catalog, for the
   * id, then its dated/undated variants. Never a price from another provider type.
   */
  price(providerType: string, model: string, at?: number): Price | null {
    let byModel = this.found.get(providerType)
    if (!byModel) this.found.set(providerType, (byModel = new Map()))
    let found = byModel.get(model)
    if (found === undefined) {
      found = this.resolve(providerType, model)
      if (byModel.size >= 10_000) byModel.clear() // ids come from configured targets; this only bounds the odd churn
      byModel.set(model, found)
    }
    return found && priceAt(found, at)
  }

  private resolve(providerType: string, model: string): Price | DatedPrice[] | null {
    const overrides = this.overrides[providerType]
    const catalog = (this.providers ??= this.load())[providerType]
    for (const id of variants(model)) {
      const price = overrides?.[id] ?? catalogModel(catalog, id)?.price
      if (price) return price
    }
    // Families priced alike (Deepgram's Aura voices are one model id each): the longest matching prefix.
    let best: string | null = null
    for (const key in overrides) {
      if (key.endsWith('*') && model.startsWith(key.slice(0, -1)) && (!best || key.length > best.length)) best = key
    }
    return best ? overrides![best]! : null
  }
}

// The catalog is parsed on the first lookup (require is synchronous and embedded by the build): a process that
// prices nothing never holds it.
const prices = new PriceList(OVERRIDES, () => (require('./catalog.generated.json') as Catalog).providers)

/** The price of a provider's model (at `at`, for prices that change by date or hour), or null when nobody set one. */
export function listPrice(providerType: string, model: string, at?: number): Price | null {
  return prices.price(providerType, model, at)
}

/**
 * Cost in integer micro-dollars. USD per million tokens (or characters) is exactly micro-dollars per token, so the
 * only rounding is one ceiling per request. Audio tokens are priced apart when the price has audio rates; seconds
 * and characters when it is sold by the hour or the character.
 */
export function costMicros(price: Price | null, usage: Pick<Usage, 'prompt_tokens' | 'completion_tokens'> & Partial<Usage>): number {
  if (!price) return 0
  const cached = Math.min(usage.cached_tokens ?? 0, usage.prompt_tokens)
  const promptAudio = price.input_audio === undefined ? 0 : Math.min(usage.prompt_audio_tokens ?? 0, usage.prompt_tokens - cached)
  const completionAudio = price.output_audio === undefined ? 0 : Math.min(usage.completion_audio_tokens ?? 0, usage.completion_tokens)
  let micros =
    (usage.prompt_tokens - cached - promptAudio) * price.input +
    cached * (price.cached_input ?? price.input) +
    promptAudio * (price.input_audio ?? 0) +
    (usage.completion_tokens - completionAudio) * price.output +
    completionAudio * (price.output_audio ?? 0)
  if (price.audio_hour && usage.audio_seconds) micros += (usage.audio_seconds * price.audio_hour * 1_000_000) / 3600
  if (price.characters && usage.characters) micros += usage.characters * price.characters
  return Math.ceil(micros - 1e-9)
}

export const microsToUsd = (micros: number) => (micros / 1_000_000).toFixed(6)
