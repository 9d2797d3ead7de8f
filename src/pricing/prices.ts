/**
 * List prices, USD per million tokens: the maintained catalog (catalog.generated.json, `bun run prices:refresh`)
 * under our own overrides. A model mapping may still set the price of one target (`targets[].price`), e.g. for
 * negotiated rates or self-hosted models; that wins over both.
 */
import type { Price, Usage } from '../plugin-sdk/types.ts'
import { catalogModel, priceAt, type Catalog, type CatalogModel, type DatedPrice } from './catalog.ts'
export type { Price }

/*
 * Image models, not in the catalog (or priced there as text). Per image (USD) by `quality/size`, `size` or
 * `quality` (see imagePrice); token-priced ones per million tokens, image tokens apart. Sources, 2025 list prices:
 * openai.com/api/pricing and OpenAI's image generation guide (DALL·E by size and quality; gpt-image-1 text in $5,
 * image in $10, image out $40; gpt-image-1-mini $2 / $2.50 / $8); ai.google.dev/gemini-api/docs/pricing (Imagen per
 * image; gemini-2.5-flash-image output images $30 per million tokens, 1,290 a picture); aws.amazon.com/bedrock/
 * pricing (Titan Image Generator by size and quality, Stability per image); docs.x.ai (grok-2-image per image).
 */
const perImage = (image: number, images?: Record<string, number>): Price => ({ input: 0, output: 0, image, ...(images ? { images } : {}) })
/** Titan Image Generator v1/v2: standard $0.008 up to 512x512, $0.01 above; premium (`hd`, `high`) $0.01 / $0.012. */
const TITAN = perImage(0.01, { '512x512': 0.008, 'hd/512x512': 0.01, 'high/512x512': 0.01, hd: 0.012, high: 0.012 })

const IMAGE_PRICES: Record<string, Record<string, Price>> = {
  gemini: {
    'imagen-4.0-generate-001': perImage(0.04),
    'imagen-4.0-ultra-generate-001': perImage(0.06),
    'imagen-4.0-fast-generate-001': perImage(0.02),
    'imagen-3.0-generate-002': perImage(0.03),
  },
  bedrock: {
    'amazon.titan-image-generator-v1': TITAN,
    'amazon.titan-image-generator-v2:0': TITAN,
    'stability.stable-image-core-v1:0': perImage(0.04),
    'stability.stable-image-core-v1:1': perImage(0.04),
    'stability.stable-image-ultra-v1:0': perImage(0.14),
    'stability.stable-image-ultra-v1:1': perImage(0.14),
    'stability.sd3-5-large-v1:0': perImage(0.08),
  },
  xai: { 'grok-2-image': perImage(0.07), 'grok-2-image-1212': perImage(0.07) },
}
const OPENAI_IMAGE_PRICES: Record<string, Price> = {
  'dall-e-2': perImage(0.02, { '256x256': 0.016, '512x512': 0.018, '1024x1024': 0.02 }),
  // `standard` (and `auto`) by size; `hd` by quality and size.
  'dall-e-3': perImage(0.04, { '1024x1024': 0.04, '1024x1792': 0.08, '1792x1024': 0.08, 'hd/1024x1024': 0.08, 'hd/1024x1792': 0.12, 'hd/1792x1024': 0.12 }),
}

/**
 * Image-token rates the catalog lacks for models it does price (as text): added to its price. gpt-image-1's output
 * is all image tokens (the catalog's $40 output), its input images $10; gemini-2.5-flash-image's output images $30.
 */
export const IMAGE_TOKEN_RATES: Record<string, Record<string, Partial<Price>>> = {
  openai: { 'gpt-image-1': { input_image: 10 }, 'gpt-image-1-mini': { input_image: 2.5 } },
  gemini: { 'gemini-2.5-flash-image': { output_image: 30 }, 'gemini-2.5-flash-image-preview': { output_image: 30 } },
}

/**
 * What the catalog lacks or gets wrong, by provider type then exact model id; each line says why. Reviewed like
 * code: an entry the catalog has come to price correctly is deleted.
 */
export const OVERRIDES: Record<string, Record<string, Price>> = {
  openai: {
    // Not in the catalog: OpenAI's list prices for its per-character speech models.
    'tts-1': { input: 0, output: 0, characters: 15 },
    'tts-1-hd': { input: 0, output: 0, characters: 30 },
    ...OPENAI_IMAGE_PRICES,
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
  ...IMAGE_PRICES,
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
      const own = overrides?.[id]
      if (own) return own
      const listed = catalogModel(catalog, id)?.price
      const extra = IMAGE_TOKEN_RATES[providerType]?.[id]
      if (listed && extra) return Array.isArray(listed) ? listed.map((p) => ({ ...p, price: { ...p.price, ...extra } })) : { ...listed, ...extra }
      if (listed) return listed
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
  const written = Math.min(usage.cache_write_tokens ?? 0, usage.prompt_tokens - cached)
  const promptAudio = price.input_audio === undefined ? 0 : Math.min(usage.prompt_audio_tokens ?? 0, usage.prompt_tokens - cached - written)
  const completionAudio = price.output_audio === undefined ? 0 : Math.min(usage.completion_audio_tokens ?? 0, usage.completion_tokens)
  // Image tokens at the image prices when the price has them (gpt-image-1's input images, Gemini's output images).
  const promptImage = price.input_image === undefined ? 0 : Math.min(usage.prompt_image_tokens ?? 0, usage.prompt_tokens - cached - written - promptAudio)
  const completionImage = price.output_image === undefined ? 0 : Math.min(usage.completion_image_tokens ?? 0, usage.completion_tokens - completionAudio)
  let micros =
    (usage.prompt_tokens - cached - written - promptAudio - promptImage) * price.input +
    cached * (price.cached_input ?? price.input) +
    written * (price.cache_write ?? price.input) +
    promptAudio * (price.input_audio ?? 0) +
    promptImage * (price.input_image ?? 0) +
    (usage.completion_tokens - completionAudio - completionImage) * price.output +
    completionAudio * (price.output_audio ?? 0) +
    completionImage * (price.output_image ?? 0)
  if (price.audio_hour && usage.audio_seconds) micros += (usage.audio_seconds * price.audio_hour * 1_000_000) / 3600
  if (price.characters && usage.characters) micros += usage.characters * price.characters
  if (usage.images) micros += usage.images * (imagePrice(price, usage.image_quality, usage.image_size) ?? 0) * 1_000_000
  return Math.ceil(micros - 1e-9)
}

/**
 * USD for one image: the entry for `quality/size`, else `size`, else `quality`, else `image`. A size or quality
 * of `*` (a budget's worst case) takes the dearest entry. Null when the model is not sold per image.
 */
export function imagePrice(price: Price, quality = 'auto', size = 'auto'): number | null {
  const table = price.images
  if (size === '*' || quality === '*') {
    const all = [...Object.values(table ?? {}), ...(price.image === undefined ? [] : [price.image])]
    return all.length > 0 ? Math.max(...all) : null
  }
  return table?.[`${quality}/${size}`] ?? table?.[size] ?? table?.[quality] ?? price.image ?? null
}

export const microsToUsd = (micros: number) => (micros / 1_000_000).toFixed(6)

/**
 * Whether a finished request went unpriced: its target has no price, or a price that charges for something but
 * charged nothing for what this request used (a speech request to a model sold by the hour of transcribed audio).
 * An explicit all-zero price is a free model, priced.
 */
export function wentUnpriced(price: Price | null, usage: Partial<Usage> | null, micros: number): boolean {
  if (!price) return true
  if (micros > 0 || !usage) return false
  const used = (usage.prompt_tokens ?? 0) + (usage.completion_tokens ?? 0) + (usage.audio_seconds ?? 0) + (usage.characters ?? 0) + (usage.images ?? 0) > 0
  const charges = Object.values(price).some((v) => (typeof v === 'number' ? v > 0 : Object.values(v ?? {}).some((x) => (x as number) > 0)))
  return used && charges
}
