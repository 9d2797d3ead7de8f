import { GatewayError, definePlugin, imageParts, t, worstCaseAudioUsage, worstCaseImageUsage, type Budget, type FinishedRequest, type Price, type RequestContext, type Target } from '../../plugin-sdk/index.ts'
import { endUser, governance, keyScope, userScope, type Admission, type Scope, type ScopeClaim } from '../admission/index.ts'
import { currentAccount } from './accounts.ts'
import { costMicros, wentUnpriced } from '../../pricing/prices.ts'

/** Completion tokens reserved for a request that sets no max_tokens. */
export const DEFAULT_COMPLETION_RESERVE = 4096

const usd = (micros: number) => (micros / 1_000_000).toFixed(6)

/**
 * What one input image may cost at most, in tokens: OpenAI's gpt-4o-mini at high detail, 2048x768 (2,833 + 8 tiles
 * of 5,667). Other vision models charge less (gpt-4o 1,445, GPT-4.1's patches at most 3,779, Claude about 1,600,
 * Together's tiles 6,404); an image referenced by URL is a few bytes that can cost all of that.
 */
export const DEFAULT_IMAGE_TOKENS = 48_169

/**
 * The most a request can cost: every prompt byte a token (byte-level tokenizers never pack fewer than one
 * byte into a token, so this bounds text prompts from above), each image at `imageTokens`, plus every completion
 * token it may produce, at the dearest target's prices. The excess is returned when the request settles to its
 * actual cost.
 */
export function worstCaseMicros(ctx: RequestContext, price: Price | null | undefined, imageTokens = DEFAULT_IMAGE_TOKENS): number {
  if (!price) return 0
  // Realtime: a response of an open session costs at worst what the session says (its conversation so far and its
  // output cap, priced as audio); opening a session costs nothing yet, but is refused when nothing is left.
  if (ctx.session) return costMicros(price, ctx.session.worstCase)
  if (ctx.operation === 'realtime') return 1
  const body = ctx.body ?? {}
  // Audio is priced in seconds, characters and audio tokens: its worst case in those units.
  const audio = worstCaseAudioUsage(ctx.operation, body)
  if (audio) return costMicros(price, audio)
  // Images: `n` times the dearest image (per-image prices) or the most tokens an image costs (token prices).
  const images = worstCaseImageUsage(ctx.operation, body)
  if (images) return costMicros(price, images)
  const prompt = promptBytes(body) + imageParts(body.messages).length * imageTokens
  const completion =
    ctx.endpoint === 'embeddings'
      ? 0
      : (body.max_completion_tokens ?? body.max_tokens ?? DEFAULT_COMPLETION_RESERVE) * Math.max(1, body.n ?? 1, body.best_of ?? 1) * promptCount(body.prompt)
  // The prompt at the dearer of the input and cache-write prices: the provider may write all of it to its cache.
  return Math.ceil(prompt * Math.max(price.input, price.cache_write ?? 0) + completion * price.output)
}

/** What a provider bills as prompt: the messages (or prompt, or input), and tool definitions and schemas beside them. */
function promptBytes(body: Record<string, any>): number {
  let bytes = Buffer.byteLength(JSON.stringify(body.messages ?? body.prompt ?? body.input ?? ''))
  for (const field of ['tools', 'functions', 'response_format'] as const) if (body[field] != null) bytes += Buffer.byteLength(JSON.stringify(body[field]))
  return bytes
}

/** Legacy completions answer each prompt of a list: a list of strings or of token lists is that many prompts. */
const promptCount = (prompt: unknown) =>
  Array.isArray(prompt) && prompt.length > 0 && (typeof prompt[0] === 'string' || Array.isArray(prompt[0])) ? prompt.length : 1

/** The least a realtime response can cost: the conversation so far and one output token (see worstCaseMicros). */
function leastResponseMicros(ctx: RequestContext): number {
  const worst = ctx.session!.worstCase
  return costMicros(ctx.model!.maxPrice!, { ...worst, completion_tokens: 1, total_tokens: worst.prompt_tokens + 1, completion_audio_tokens: 1 })
}

/** Why a text request's worst case is what it is, for a refusal that a smaller `max_tokens` would have avoided. */
function reserveHint(ctx: RequestContext): string {
  if (ctx.endpoint !== 'chat' && ctx.endpoint !== 'completions') return ''
  const asked = ctx.body?.max_completion_tokens ?? ctx.body?.max_tokens
  const output = asked == null ? `${DEFAULT_COMPLETION_RESERVE} output tokens, as it sets no max_tokens` : `its max_tokens (${asked})`
  return ` (its prompt and ${output}, at the model's price): a smaller max_tokens may fit`
}

/**
 * Spending caps of keys (`budget: { usd, period }`) and of each end user of a key (`user_limits.budget`, by the
 * request's `user`). Before a request goes upstream its worst-case cost is reserved against what is left; when
 * it ends, the reservation is settled to the actual cost (an aborted stream pays for its prompt and what it
 * received). Admitted together with the rate limits (src/plugins/admission): exact across instances with Redis;
 * state lost with a restart is rebuilt from the spend ledger. When Redis fails, the budget is kept by this
 * instance alone (marked `x-conduit-budget-degraded`, counted in `conduit_budget_fail_open_total`) or, with
 * `failClosed`, the request is refused with a 503. A model without any price cannot be counted against a
 * budget: such requests are refused (403 model_not_priced) unless `allowUnpriced`.
 */
export default definePlugin({
  name: 'budget',
  version: '1.0.0',
  apiVersion: 1,
  // After the rate limits: when both refuse, the rate limit speaks.
  priority: 800,
  configSchema: t.Object({
    failClosed: t.Boolean({ default: false }),
    /**
     * Money may get more patience than rate limits: a request governed by both waits for Redis the longer of
     * the two timeouts. The event loop's own delays do not count against either.
     */
    redisTimeoutMs: t.Integer({ minimum: 1, default: 500 }),
    /** Let a key with a budget call a model that has no price (its requests then cost $0 against the budget). */
    allowUnpriced: t.Boolean({ default: false }),
    /** Tokens reserved for each input image (see DEFAULT_IMAGE_TOKENS); lower it when no target is gpt-4o-mini. */
    imageTokens: t.Integer({ minimum: 0, default: DEFAULT_IMAGE_TOKENS }),
  }),
  setup(api) {
    const failOpen = api.counter({
      name: 'conduit_budget_fail_open_total',
      help: 'Requests whose budgets were kept by this instance alone because Redis errored, did not answer in time, or had failed within the last second (reason: error, timeout, bypass).',
      labelNames: ['reason'],
    })
    const unpriced = api.counter({
      name: 'conduit_unpriced_requests_total',
      help: 'Requests served by a target without a price (no override, no catalog entry): recorded at $0 and flagged in the ledger.',
      labelNames: ['provider', 'model'],
    })
    const { allowUnpriced, imageTokens } = api.config

    const claimIn = (ctx: RequestContext, scope: Scope, budget: Budget, cost: number): ScopeClaim => {
      const account = currentAccount(budget)
      const limitMicros = Math.round(budget.usd * 1_000_000)
      return { scope, rates: [], slots: null, budget: { limitMicros, cost, period: account.period, since: account.since, ttlMs: account.ttlSec * 1000 } }
    }

    /**
     * What a request is charged: its cost, except that a target without a price costs $0, so when the model has
     * priced ones too the hold (its worst case at the dearest price) is charged instead, and the budget still binds.
     */
    const charged = (target: Target | null, cost: number, reserved: number) => (target && !target.price && !allowUnpriced ? Math.max(cost, reserved) : cost)

    const gov = governance(api)
    gov.join({
      budget: {
        failClosed: api.config.failClosed,
        timeoutMs: api.config.redisTimeoutMs,
        failedOpen: (reason) => failOpen.inc({ reason }),
        charge: (f, reserved) => charged(f.target, f.costMicros, reserved),
        claim(ctx) {
          const limits = ctx.principal?.limits
          if (!limits || !ctx.body) return null
          const userBudget = limits.user_limits?.budget
          const user = userBudget ? endUser(ctx) : null
          if (!limits.budget && !user) return null
          const price = ctx.model?.maxPrice
          if (!price && !allowUnpriced) {
            const whose = limits.budget ? "this key's budget" : `the budget of this key's user '${user}'`
            const message = `The model '${ctx.model?.name}' has no price, so ${whose} could not count what it costs; the request was not sent.`
            throw new GatewayError(403, message, { code: 'model_not_priced', param: 'model' })
          }
          const cost = worstCaseMicros(ctx, price, imageTokens)
          const keyId = ctx.principal!.keyId
          const claims: ScopeClaim[] = []
          if (limits.budget) claims.push(claimIn(ctx, keyScope(keyId), limits.budget, cost))
          if (user) claims.push(claimIn(ctx, userScope(keyId, user), userBudget!, cost))
          return claims
        },
      },
    })
    api.onClose(() => gov.leave())

    const present = (ctx: RequestContext, admission: Admission) => {
      if (admission.unavailable.budget) {
        throw new GatewayError(503, 'The key has a budget that cannot be checked right now; the request was not sent.', { code: 'budget_unavailable', headers: { 'retry-after': '1' } })
      }
      if (admission.unavailable.limits) return // the rate-limit plugin refuses it
      let left = Infinity
      // A budget that is spent is the answer even when another scope's is only held: retrying would not help.
      let held: GatewayError | null = null
      for (let i = 0; i < admission.claims.length; i++) {
        const claim = admission.claims[i]!
        const decided = admission.outcome.scopes[i]!.budget
        if (!claim.budget || !decided) continue
        if (!decided.ok) {
          const budget = claim.scope.kind === 'user' ? ctx.principal!.limits!.user_limits!.budget! : ctx.principal!.limits!.budget!
          const worst = claim.budget.cost > decided.left ? ` This request could cost up to $${usd(claim.budget.cost)}${reserveHint(ctx)}.` : ''
          const period = budget.period === 'total' ? '' : `${budget.period} `
          const whose = claim.scope.kind === 'user' ? `The user '${claim.scope.user}' of this key` : 'This key'
          if (decided.held > 0 && claim.budget.cost <= decided.left + decided.held) {
            // Not spent but held: requests in flight reserve their worst case, and most of it comes back as they end.
            held ??= new GatewayError(
              429,
              `${whose} has $${usd(decided.left)} of its ${period}budget of $${budget.usd} free; requests in flight hold $${usd(decided.held)} until they finish.${worst} Retry shortly.`,
              { code: 'budget_held', headers: { 'retry-after': '1' } },
            )
            continue
          }
          if (ctx.session && decided.left >= leastResponseMicros(ctx)) {
            // A session's response whose worst case does not fit what is left: refused, and the session goes on.
            const cap = ctx.session.worstCase.completion_tokens
            const message = `${whose} has $${usd(decided.left)} left of its ${period}budget of $${budget.usd}. This response could cost up to $${usd(claim.budget.cost)} (the conversation so far and ${cap} output tokens, at the model's audio price): a smaller max_output_tokens may fit.`
            throw new GatewayError(429, message, { type: 'insufficient_quota', code: 'response_exceeds_budget' })
          }
          throw new GatewayError(429, `${whose} has reached its ${period}budget of $${budget.usd} ($${usd(decided.left)} left).${worst}`, {
            type: 'insufficient_quota',
            code: 'insufficient_quota',
            // The official SDKs retry a 429 twice unless told not to; waiting does not refill a budget.
            headers: { 'x-should-retry': 'false' },
          })
        }
        left = Math.min(left, decided.left)
      }
      if (held) throw held
      if (left === Infinity) return
      if (admission.via === 'degraded') ctx.setHeader('x-conduit-budget-degraded', 'true')
      ctx.setHeader('x-conduit-budget-remaining-usd', usd(left))
      // `left` is after this request's worst case; a whole answer says what is left after what it cost.
      const hold = admission.claims.find((c) => c.budget)!.budget!.cost
      ctx.onPriced((cost, target) => ctx.setHeader('x-conduit-budget-remaining-usd', usd(Math.max(0, left + hold - charged(target, cost, hold)))))
    }

    /**
     * One admission for a request (onAccess) and for each response of a realtime session (onSessionEvent), settled
     * by onLog. Keys without a budget cost a few property checks, no promise.
     */
    const admit = (ctx: RequestContext) => {
      const admission = gov.admission(ctx)
      if (admission instanceof Promise) return admission.then((a) => present(ctx, a))
      if (admission) present(ctx, admission)
    }

    return {
      onAccess: admit,
      onSessionEvent: admit,
      onLog(f: FinishedRequest) {
        if (f.target && wentUnpriced(f.target.price, f.usage, f.costMicros)) unpriced.inc({ provider: f.target.provider.name, model: f.target.model })
        gov.finish(f)
      },
    }
  },
})
