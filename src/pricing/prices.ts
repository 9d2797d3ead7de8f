/**
 * List prices of the built-in providers' common models, USD per million tokens. Versioned: a change of price
 * is a change of this file (and of PRICES_VERSION), reviewed like code. A model mapping may override the price
 * of one target (`targets[].price`), e.g. for negotiated rates or self-hosted models.
 */
export const PRICES_VERSION = '2026-11-01'

import type { Price } from '../plugin-sdk/types.ts'
export type { Price }

/** By provider type, then model id; a dated id (`gpt-4o-2024-08-06`) falls back to its longest listed prefix. */
export const PRICES: Record<string, Record<string, Price>> = {
  openai: {
    'gpt-4o': { input: 2.5, output: 10, cached_input: 1.25 },
    'gpt-4o-mini': { input: 0.15, output: 0.6, cached_input: 0.075 },
    'gpt-4.1': { input: 2, output: 8, cached_input: 0.5 },
    'gpt-4.1-mini': { input: 0.4, output: 1.6, cached_input: 0.1 },
    'gpt-4.1-nano': { input: 0.1, output: 0.4, cached_input: 0.025 },
    'o4-mini': { input: 1.1, output: 4.4, cached_input: 0.275 },
    'gpt-3.5-turbo': { input: 0.5, output: 1.5 },
    'text-embedding-3-small': { input: 0.02, output: 0 },
    'text-embedding-3-large': { input: 0.13, output: 0 },
  },
  anthropic: {
    'claude-opus-4': { input: 15, output: 75, cached_input: 1.5 },
    'claude-sonnet-4': { input: 3, output: 15, cached_input: 0.3 },
    'claude-haiku-4': { input: 1, output: 5, cached_input: 0.1 },
    'claude-3-5-haiku': { input: 0.8, output: 4, cached_input: 0.08 },
  },
  groq: {
    'llama-3.3-70b-versatile': { input: 0.59, output: 0.79 },
    'llama-3.1-8b-instant': { input: 0.05, output: 0.08 },
  },
  mistral: {
    'mistral-large': { input: 2, output: 6 },
    'mistral-small': { input: 0.2, output: 0.6 },
    'mistral-embed': { input: 0.1, output: 0 },
  },
  deepseek: {
    'deepseek-chat': { input: 0.27, output: 1.1, cached_input: 0.07 },
    'deepseek-reasoner': { input: 0.55, output: 2.19, cached_input: 0.14 },
  },
  xai: { 'grok-3': { input: 3, output: 15 }, 'grok-3-mini': { input: 0.3, output: 0.5 } },
  cerebras: { 'llama-3.3-70b': { input: 0.85, output: 1.2 } },
  together: { 'meta-llama/Llama-3.3-70B-Instruct-Turbo': { input: 0.88, output: 0.88 } },
  fireworks: { 'accounts/fireworks/models/llama-v3p3-70b-instruct': { input: 0.9, output: 0.9 } },
}

/** The price of a provider's model, or null when nobody set one (the request is still recorded, at cost 0). */
export function listPrice(providerType: string, model: string): Price | null {
  const table = PRICES[providerType]
  if (!table) return null
  if (table[model]) return table[model]
  let best: string | null = null
  for (const id in table) if (model.startsWith(id) && (best === null || id.length > best.length)) best = id
  return best ? table[best]! : null
}

/**
 * Cost in integer micro-dollars. USD per million tokens is exactly micro-dollars per token, so the only
 * rounding is one ceiling per request.
 */
export function costMicros(price: Price | null, usage: { prompt_tokens: number; completion_tokens: number; cached_tokens?: number }): number {
  if (!price) return 0
  const cached = Math.min(usage.cached_tokens ?? 0, usage.prompt_tokens)
  const micros = (usage.prompt_tokens - cached) * price.input + cached * (price.cached_input ?? price.input) + usage.completion_tokens * price.output
  return Math.ceil(micros - 1e-9)
}

export const microsToUsd = (micros: number) => (micros / 1_000_000).toFixed(6)
