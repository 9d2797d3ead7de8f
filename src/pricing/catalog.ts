/**
 * The maintained price catalog (catalog.generated.json, written by `bun run prices:refresh` from
 * @pydantic/genai-prices) and the two rules needed to read it: which model a rule names, and which of a model's
 * prices applies at a given time. Both follow the catalog's own `calcPrice` exactly (test/pricing compares them on
 * every model); the package itself stays out of the gateway because loading it costs 12-16 MB of RSS.
 */
import type { Price } from '../plugin-sdk/types.ts'

/** The catalog's model-name rule, its strings lower-cased; it is tried on the lower-cased model id. */
export type Match =
  | { or: Match[] }
  | { and: Match[] }
  | { equals: string }
  | { starts_with: string }
  | { ends_with: string }
  | { contains: string }
  | { regex: string }

/** A price that applies from a date (`since`, epoch ms) or during a window of the UTC day (`utc`, seconds [from, to)). */
export interface DatedPrice {
  price: Price
  since?: number
  utc?: [number, number]
}

export interface CatalogModel {
  id: string
  match: Match
  /** One price, or the catalog's conditional prices in its order. */
  price: Price | DatedPrice[]
}

export interface Catalog {
  /** The package and version the file was generated from. */
  source: string
  generatedBy: string
  /** By our provider type, models in the catalog's order: the first whose rule matches names the model. */
  providers: Record<string, CatalogModel[]>
}

const regexes = new Map<string, RegExp>()

export function matches(rule: Match, id: string): boolean {
  if ('or' in rule) return rule.or.some((r) => matches(r, id))
  if ('and' in rule) return rule.and.every((r) => matches(r, id))
  if ('equals' in rule) return id === rule.equals
  if ('starts_with' in rule) return id.startsWith(rule.starts_with)
  if ('ends_with' in rule) return id.endsWith(rule.ends_with)
  if ('contains' in rule) return id.includes(rule.contains)
  let regex = regexes.get(rule.regex)
  if (!regex) regexes.set(rule.regex, (regex = new RegExp(rule.regex)))
  return regex.test(id)
}

/** The first of a provider's catalog models whose rule matches the id, as the catalog picks. */
export function catalogModel(models: CatalogModel[] | undefined, model: string): CatalogModel | null {
  const id = model.toLowerCase().trim()
  return models?.find((m) => matches(m.match, id)) ?? null
}

const DAY_SECONDS = 86_400

function holds(p: DatedPrice, at: number): boolean {
  if (p.since !== undefined) return at >= p.since
  if (!p.utc) return true
  const [from, to] = p.utc
  const second = (at / 1000) % DAY_SECONDS
  return from <= to ? second >= from && second < to : second >= from || second < to
}

/** The price at `at` (epoch ms, now by default): the last conditional price whose condition holds, else the first (the catalog's rule). */
export function priceAt(price: Price | DatedPrice[], at?: number): Price {
  if (!Array.isArray(price)) return price
  const now = at ?? Date.now()
  for (let i = price.length - 1; i > 0; i--) if (holds(price[i]!, now)) return price[i]!.price
  return price[0]!.price
}
