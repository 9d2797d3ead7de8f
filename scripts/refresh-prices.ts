/**
 * `bun run prices:refresh` → src/pricing/catalog.generated.json: the token prices Conduit charges, taken from
 * @pydantic/genai-prices (MIT; a devDependency pinned in bun.lock) for the provider types we route to.
 *
 * The package is read here, not at run time: importing it costs 12-16 MB of RSS (all 43 providers, usage
 * extractors, the unit registry), while the extract is a few hundred KB that the build embeds. It is also a file
 * in the repo, so a change of price is a diff reviewed like code. To take new prices: `bun add --dev --exact
 * @pydantic/genai-prices@<version>`, then `bun run prices:refresh`; test/pricing fails until both are done.
 */
import { resolve } from 'node:path'
import { waitForUpdate, type ConditionalPrice, type MatchLogic, type ModelPrice, type Provider } from '@pydantic/genai-prices'
import type { Catalog, CatalogModel, DatedPrice } from '../src/pricing/catalog.ts'
import type { Price } from '../src/pricing/prices.ts'

export const CATALOG_PACKAGE = '@pydantic/genai-prices'
export const CATALOG_FILE = resolve(import.meta.dir, '../src/pricing/catalog.generated.json')

/**
 * Our provider type → the catalog's provider id. Not here, so never priced from the catalog: azure (a target's
 * model is a deployment name, which has no list price), ollama and vllm (self-hosted), openai-compatible (unknown
 * server), deepinfra (not in the catalog).
 */
export const CATALOG_PROVIDERS: Record<string, string> = {
  openai: 'openai',
  anthropic: 'anthropic',
  gemini: 'google',
  bedrock: 'aws',
  cohere: 'cohere',
  groq: 'groq',
  together: 'together',
  fireworks: 'fireworks',
  mistral: 'mistral',
  openrouter: 'openrouter',
  xai: 'x-ai',
  deepseek: 'deepseek',
  cerebras: 'cerebras',
}

/** The installed catalog's version, from its package.json (which the package does not export). */
export async function catalogVersion(): Promise<string> {
  const entry = Bun.resolveSync(CATALOG_PACKAGE, import.meta.dir)
  const pkg = await Bun.file(resolve(entry, '../../package.json')).json()
  return `${CATALOG_PACKAGE}@${pkg.version}`
}

/**
 * One model's price in our units, or null when the catalog prices it in units we do not bill (pages, images…).
 * Audio is billed by the token (audio rates apart), by the hour (`audio_hours`, `input_audio_hours`) or, outside
 * the catalog, by the character. A tiered price (Gemini and Claude above 200k prompt tokens) keeps its base, the
 * price of the prompts under the first threshold.
 */
function tokenPrice(p: ModelPrice): Price | null {
  const keys = Object.keys(p).filter((k) => p[k] !== undefined)
  if (keys.length === 0) return { input: 0, output: 0 } // the catalog's way of saying free (`:free` models, previews)
  const base = (v: ModelPrice[string]) => (typeof v === 'object' ? v.base : v)
  const hour = base(p.input_audio_hours) ?? base(p.audio_hours)
  if (p.input_mtok === undefined && p.output_mtok === undefined && hour === undefined) return null
  const price: Price = { input: base(p.input_mtok) ?? 0, output: base(p.output_mtok) ?? 0 }
  const cached = base(p.cache_read_mtok)
  if (cached !== undefined) price.cached_input = cached
  const cacheWrite = base(p.cache_write_mtok)
  if (cacheWrite !== undefined) price.cache_write = cacheWrite
  const inputAudio = base(p.input_audio_mtok)
  if (inputAudio !== undefined) price.input_audio = inputAudio
  const outputAudio = base(p.output_audio_mtok)
  if (outputAudio !== undefined) price.output_audio = outputAudio
  if (hour !== undefined) price.audio_hour = hour
  return price
}

/** Seconds into the UTC day of the catalog's `HH:MM:SSZ`. */
function utcSeconds(time: string): number {
  const [h, m, s] = time.replace(/Z$/, '').split(':').map(Number)
  if (!time.endsWith('Z') || [h, m, s].some((n) => n === undefined || !Number.isFinite(n))) throw new Error(`unexpected time of day ${time}`)
  return h! * 3600 + m! * 60 + s!
}

function datedPrice(c: ConditionalPrice): DatedPrice | null {
  const price = tokenPrice(c.prices)
  if (!price) return null
  const constraint = c.constraint
  if (!constraint) return { price }
  if (constraint.type === 'start_date') return { price, since: Date.parse(`${constraint.start_date}T00:00:00Z`) }
  return { price, utc: [utcSeconds(constraint.start_time), utcSeconds(constraint.end_time)] }
}

/** Match rules compare lower-cased ids (as the catalog does), so their strings are lower-cased once, here. */
function lowerCased(rule: MatchLogic): MatchLogic {
  if ('or' in rule) return { or: rule.or.map(lowerCased) }
  if ('and' in rule) return { and: rule.and.map(lowerCased) }
  if ('regex' in rule) return rule
  const [[kind, value]] = Object.entries(rule) as [[string, string]]
  return { [kind]: value.toLowerCase() } as MatchLogic
}

function model(m: Provider['models'][number]): CatalogModel | null {
  let price: CatalogModel['price'] | null
  if (Array.isArray(m.prices)) {
    const dated = m.prices.map(datedPrice)
    price = dated.every((d) => d !== null) ? (dated as DatedPrice[]) : null
  } else price = tokenPrice(m.prices)
  return price && { id: m.id, match: lowerCased(m.match), price }
}

/** The catalog file for these providers: models in the catalog's order (the first whose rule matches wins). */
export function buildCatalog(providers: Provider[], source: string): Catalog {
  const out: Catalog = { source, generatedBy: 'scripts/refresh-prices.ts (bun run prices:refresh); overrides go in prices.ts', providers: {} }
  for (const [type, id] of Object.entries(CATALOG_PROVIDERS)) {
    const provider = providers.find((p) => p.id === id)
    if (!provider) throw new Error(`${source} has no provider ${id} (for ${type})`)
    out.providers[type] = provider.models.map(model).filter((m) => m !== null)
  }
  return out
}

/** One model a line, so a refresh reads as a diff of the prices that changed. */
export function renderCatalog(catalog: Catalog): string {
  const providers = Object.entries(catalog.providers)
    .map(([type, models]) => `    ${JSON.stringify(type)}: [\n${models.map((m) => `      ${JSON.stringify(m)}`).join(',\n')}\n    ]`)
    .join(',\n')
  return `{\n  "source": ${JSON.stringify(catalog.source)},\n  "generatedBy": ${JSON.stringify(catalog.generatedBy)},\n  "providers": {\n${providers}\n  }\n}\n`
}

/** The file the installed catalog produces; the bundled data only (the package fetches nothing unless asked to). */
export async function generate(): Promise<string> {
  const providers = await waitForUpdate()
  if (!providers) throw new Error(`${CATALOG_PACKAGE} returned no data`)
  return renderCatalog(buildCatalog(providers, await catalogVersion()))
}

if (import.meta.main) {
  const text = await generate()
  await Bun.write(CATALOG_FILE, text)
  const catalog = JSON.parse(text) as Catalog
  const counts = Object.entries(catalog.providers).map(([type, models]) => `${type} ${models.length}`)
  console.log(`${CATALOG_FILE}: ${catalog.source}; models priced per provider type: ${counts.join(', ')}`)
}
