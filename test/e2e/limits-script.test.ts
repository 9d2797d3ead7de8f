import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import fc from 'fast-check'
import Redis from 'ioredis'
import { taken, type Outcome, type Scope, type ScopeClaim, type Settlement } from '../../src/plugins/admission/claims.ts'
import { LocalState } from '../../src/plugins/admission/local.ts'
import { GOVERN, NOW } from '../../src/plugins/admission/script.ts'
import { decodeReply, encodeCall, type Delta } from '../../src/plugins/admission/shared.ts'

/**
 * The Redis script and the in-process state are two implementations of one admission: every limit of every
 * scope, the slot and the budget, all or nothing, and the settlements that follow. Random sequences of
 * admissions, settlements and pauses (in synthetic time: the script's clock line reads the instant from the last
 * argument) must get the same outcome, request by request, from both.
 */
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
let redis: Redis
let sha: string

beforeAll(async () => {
  redis = new Redis(REDIS_URL)
  sha = (await redis.script('LOAD', GOVERN.replace(NOW, 'local now = tonumber(ARGV[#ARGV])'))) as string
})
afterAll(() => redis.disconnect())

/**
 * A scope's state as the script keeps it, read here without the script (layout in script.ts): little-endian doubles
 * x, rpm, rpd, tpm, ipm, bs and the instance count, bp (zero-terminated), then per instance its id, n, r, e and q,
 * then the limits the four TATs were run up under.
 */
async function readState(key: string) {
  const raw = await redis.getBuffer(key)
  if (!raw) return null
  let at = 0
  const num = () => raw.readDoubleLE((at += 8) - 8)
  const str = () => {
    const end = raw.indexOf(0, at)
    const text = raw.toString('utf8', at, end)
    at = end + 1
    return text
  }
  const [x, rpm, rpd, tpm, ipm, bs, count] = Array.from({ length: 7 }, num)
  const bp = str()
  const instances: Record<string, { n: number; r: number; e: number; q: number }> = {}
  for (let i = 0; i < count!; i++) instances[str()] = { n: num(), r: num(), e: num(), q: num() }
  const [rpmL, rpdL, tpmL, ipmL] = Array.from({ length: 4 }, num)
  expect(at).toBe(raw.length)
  return { x, tats: { rpm, rpd, tpm, ipm }, limits: { rpm: rpmL, rpd: rpdL, tpm: tpmL, ipm: ipmL }, bs, bp, instances }
}

const MINUTE = 60_000
const DAY = 86_400_000

const scopeOf = (t: string): Scope => ({ kind: 'key', tag: t, key: `conduit:gov:{${t}}:k`, label: 'this key', keyId: t })
/** One GOVERN call by `instance` at `now`: a settlement batch, and at most one admission, whose outcome it returns. */
const govern = async (instance: string, now: number, batch: { seq: number; deltas: Delta[] } | null, claims: ScopeClaim[] | null, loads?: Map<string, number>) => {
  const admissions = claims ? [{ claims, shadow: false, loads: loads ?? null }] : []
  const { keys, argv } = encodeCall(instance, 30_000, batch, admissions)
  return decodeReply(admissions, (await redis.callBuffer('EVALSHA', [sha, keys.length, ...keys, ...argv, now])) as Buffer)[0] ?? null
}

const request = fc.record({
  rpm: fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }),
  rpd: fc.option(fc.integer({ min: 1, max: 12 }), { nil: undefined }),
  tpm: fc.option(fc.integer({ min: 50, max: 400 }), { nil: undefined }),
  tokens: fc.integer({ min: 1, max: 120 }),
  slots: fc.option(fc.integer({ min: 1, max: 3 }), { nil: undefined }),
  // Multiples of 50 (the spend loaded, too): a request that exactly uses up what is left comes up often.
  budget: fc.option(fc.integer({ min: 2, max: 60 }).map((n) => n * 50), { nil: undefined }),
  cost: fc.integer({ min: 0, max: 14 }).map((n) => n * 50),
  user: fc.boolean(),
  userRpm: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
  userBudget: fc.option(fc.integer({ min: 2, max: 40 }).map((n) => n * 50), { nil: undefined }),
})
const step = fc.oneof(
  { arbitrary: request.map((r) => ({ kind: 'admit' as const, r })), weight: 5 },
  { arbitrary: fc.record({ which: fc.nat(), used: fc.integer({ min: 0, max: 150 }), spent: fc.integer({ min: 0, max: 18 }).map((n) => n * 50) }).map((s) => ({ kind: 'finish' as const, s })), weight: 3 },
  { arbitrary: fc.integer({ min: 1, max: 30_000 }).map((ms) => ({ kind: 'wait' as const, ms })), weight: 1 },
)

describe('script and in-process state', () => {
  test('decide alike, request by request, over random admissions, settlements and pauses', async () => {
    await fc.assert(
      fc.asyncProperty(fc.boolean(), fc.array(step, { minLength: 1, maxLength: 60 }), async (shadow, steps) => {
        const tag = `eq-${crypto.randomUUID()}`
        const scopes: Record<'key' | 'user', Scope> = {
          key: { kind: 'key', tag, key: `conduit:gov:{${tag}}:k`, label: 'this key', keyId: tag },
          user: { kind: 'user', tag, key: `conduit:gov:{${tag}}:u:alice`, label: "the user 'alice' of this key", keyId: tag, user: 'alice' },
        }
        let now = 1_000_000
        let seq = 0
        const local = new LocalState(() => now)
        /** One GOVERN call at `now`: settlements first, then at most one admission. */
        const call = async (deltas: Delta[], admission: { claims: ScopeClaim[]; loads: Map<string, number> | null } | null) => {
          const admissions = admission ? [{ ...admission, shadow }] : []
          const { keys, argv } = encodeCall('eq', 1e9, deltas.length > 0 ? { seq: ++seq, deltas } : null, admissions)
          const reply = (await redis.callBuffer('EVALSHA', [sha, keys.length, ...keys, ...argv, now])) as Buffer
          return decodeReply(admissions, reply)[0] ?? null
        }
        const admitted: { claims: ScopeClaim[]; outcome: Outcome }[] = []
        try {
          for (const s of steps) {
            if (s.kind === 'wait') {
              now += s.ms
            } else if (s.kind === 'admit') {
              const { r } = s
              const claims: ScopeClaim[] = []
              const rates = [
                r.rpm && { rule: 'rpm' as const, unit: 'requests' as const, limit: r.rpm, periodMs: MINUTE, cost: 1 },
                r.rpd && { rule: 'rpd' as const, unit: 'requests' as const, limit: r.rpd, periodMs: DAY, cost: 1 },
                r.tpm && { rule: 'tpm' as const, unit: 'tokens' as const, limit: r.tpm, periodMs: MINUTE, cost: Math.min(r.tokens, r.tpm) },
              ].filter((x) => !!x)
              const budget = (limit: number) => ({ limitMicros: limit, cost: r.cost, period: 'total', since: 0, ttlMs: 7 * DAY })
              if (rates.length || r.slots || r.budget) claims.push({ scope: scopes.key, rates, slots: r.slots ?? null, budget: r.budget ? budget(r.budget) : null })
              if (r.user && (r.userRpm || r.userBudget)) {
                const userRates = r.userRpm ? [{ rule: 'rpm' as const, unit: 'requests' as const, limit: r.userRpm, periodMs: MINUTE, cost: 1 }] : []
                claims.push({ scope: scopes.user, rates: userRates, slots: null, budget: r.userBudget ? budget(r.userBudget) : null })
              }
              if (claims.length === 0) continue
              let here = local.admit(claims, shadow)
              let there = (await call([], { claims, loads: null }))!
              expect(there).toEqual(here)
              if (here.status === -1) {
                // A budget first used: both sum the ledger (some spend already there) and ask again.
                const loads = new Map(claims.filter((c) => c.budget).map((c) => [c.scope.key, 50]))
                here = local.admit(claims, shadow, loads)
                there = (await call([], { claims, loads }))!
                expect(there).toEqual(here)
              }
              if (here.status > 0) admitted.push({ claims, outcome: here })
            } else if (admitted.length > 0) {
              // A request ends: what Governance.finish settles, to both.
              const { claims, outcome } = admitted.splice(s.s.which % admitted.length, 1)[0]!
              const settlements: Settlement[] = claims.map((claim) => {
                const took = taken(claim, outcome.status)
                const adjustments = took.rates
                  ? claim.rates.filter((r) => r.unit === 'tokens').map((r) => ({ rule: r.rule, limit: r.limit, periodMs: r.periodMs, units: s.s.used - r.cost }))
                  : []
                return { scope: claim.scope, holds: took.lease ? 1 : 0, reserved: took.reserved, spent: took.lease && claim.budget ? s.s.spent : 0, period: claim.budget?.period ?? null, adjustments }
              })
              for (const settlement of settlements) local.settle(settlement)
              const deltas = settlements.map((x) => ({ ...x, adjustments: new Map(x.adjustments.map((a) => [a.rule, a])), absolute: null }))
              await call(deltas, null)
            }
          }
        } finally {
          await redis.del(scopes.key.key, scopes.user.key)
        }
      }),
      { numRuns: 300 },
    )
  }, 60_000)

  describe('per instance', () => {
    const tag = () => `inst-${crypto.randomUUID()}`
    const slotAndBudget = (scope: Scope): ScopeClaim => ({
      scope,
      rates: [],
      slots: 1,
      budget: { limitMicros: 1_000, cost: 600, period: 'total', since: 0, ttlMs: 7 * DAY },
    })
    const release = (scope: Scope, spent: number): Delta => ({ scope, holds: 1, reserved: 600, spent, period: 'total', adjustments: new Map(), absolute: null })

    test('a settlement batch sent again under the same number (its reply was lost) counts once', async () => {
      const scope = scopeOf(tag())
      try {
        expect((await govern('a', 1_000, null, [slotAndBudget(scope)], new Map([[scope.key, 0]])))!.status).toBe(1)
        await govern('a', 2_000, { seq: 7, deltas: [release(scope, 300)] }, null)
        await govern('a', 3_000, { seq: 7, deltas: [release(scope, 300)] }, null)
        expect((await readState(scope.key))!.bs).toBe(300)
        // Spent 300 of 1,000: a request reserving 600 fits, exactly once (its slot is the only one).
        expect((await govern('b', 4_000, null, [slotAndBudget(scope)]))!.scopes[0]!.budget).toEqual({ loaded: true, ok: true, left: 100, held: 0 })
      } finally {
        await redis.del(scope.key)
      }
    })

    test('what a crashed instance held comes back once its lease lapses; a live one renews it', async () => {
      const scope = scopeOf(tag())
      try {
        expect((await govern('a', 1_000, null, [slotAndBudget(scope)], new Map([[scope.key, 0]])))!.status).toBe(1)
        // Instance a holds the only slot and 600 of 1,000: b is refused on both counts, before the lease lapses.
        const refused = (await govern('b', 1_000 + 29_000, null, [slotAndBudget(scope)]))!
        expect(refused.status).toBe(0)
        expect(refused.scopes[0]).toEqual({ rates: [], slotTaken: false, budget: { loaded: true, ok: false, left: 400, held: 600 } })
        // a renews (an empty settlement) at 20 s: still held at 45 s.
        await govern('a', 21_000, { seq: 1, deltas: [{ ...release(scope, 0), holds: 0, reserved: 0 }] }, null)
        expect((await govern('b', 45_000, null, [slotAndBudget(scope)]))!.status).toBe(0)
        // a stops renewing (it crashed): after its lease (30 s from the last renewal) b gets the slot and the money.
        const admitted = (await govern('b', 21_000 + 30_001, null, [slotAndBudget(scope)]))!
        expect(admitted.status).toBe(1)
        expect(admitted.scopes[0]!.budget).toEqual({ loaded: true, ok: true, left: 400, held: 0 })
        expect((await readState(scope.key))!.instances.a).toMatchObject({ n: 0, r: 0 })
      } finally {
        await redis.del(scope.key)
      }
    })

    test('an admission whose reply was lost: the next call sets the instance’s count to what it knows', async () => {
      const scope = scopeOf(tag())
      try {
        expect((await govern('a', 1_000, null, [slotAndBudget(scope)], new Map([[scope.key, 0]])))!.status).toBe(1)
        // Instance a never saw that reply, so it holds nothing here: it says so, and the slot is free again.
        await govern('a', 2_000, { seq: 1, deltas: [{ scope, holds: 0, reserved: 0, spent: 0, period: null, adjustments: new Map(), absolute: { n: 0, r: 0 } }] }, null)
        expect((await govern('b', 3_000, null, [slotAndBudget(scope)]))!.status).toBe(1)
      } finally {
        await redis.del(scope.key)
      }
    })

    test('every state gets an expiry, and is extended only when it must outlive it', async () => {
      const scope = scopeOf(tag())
      try {
        const rate = { rule: 'rpm' as const, unit: 'requests' as const, limit: 10, periodMs: MINUTE, cost: 1 }
        await govern('a', 1_000, null, [{ scope, rates: [rate], slots: null, budget: null }])
        const first = await redis.pttl(scope.key)
        expect(first).toBeGreaterThan(60_000)
        expect(first).toBeLessThanOrEqual(66_000)
        await redis.pexpire(scope.key, 500_000) // as if set long ago: a request that needs less leaves it alone
        await govern('a', 2_000, null, [{ scope, rates: [rate], slots: null, budget: null }])
        expect(await redis.pttl(scope.key)).toBeGreaterThan(66_000)
      } finally {
        await redis.del(scope.key)
      }
    })
  })

  test('a limit changed mid-period keeps what was counted: rpd 5 used up and raised to 100 leaves 95; 50 of 100 lowered to 10 leaves none', async () => {
    const scope = scopeOf(`change-${crypto.randomUUID()}`)
    let now = 9_000_000
    const local = new LocalState(() => now)
    const claimsAt = (limit: number): ScopeClaim[] => [{ scope, rates: [{ rule: 'rpd', unit: 'requests', limit, periodMs: DAY, cost: 1 }], slots: null, budget: null }]
    /** Requests one at a time under `limit`, in Redis and in-process alike, until one is refused or `most`: how many were admitted. */
    const admitUpTo = async (limit: number, most: number) => {
      let admitted = 0
      for (; admitted < most; admitted++) {
        now += 1
        const there = await govern('a', now, null, claimsAt(limit))
        expect(there).toEqual(local.admit(claimsAt(limit), false))
        if (there!.status !== 1) break
      }
      return admitted
    }
    try {
      expect(await admitUpTo(5, 10)).toBe(5)
      expect(await admitUpTo(100, 200)).toBe(95)
      expect((await readState(scope.key))!.limits.rpd).toBe(100)
      await redis.del(scope.key)
      local.sweep()
      now += DAY
      expect(await admitUpTo(100, 50)).toBe(50)
      expect(await admitUpTo(10, 10)).toBe(0)
      // And raised back: the 50 still count.
      expect(await admitUpTo(100, 100)).toBe(50)
    } finally {
      await redis.del(scope.key)
    }
  })

  test('a state written before limits were kept (nothing after its instances) is read, and written back with them', async () => {
    const scope = scopeOf(`old-${crypto.randomUUID()}`)
    const now = 11_000_000
    // x, rpm, rpd (one request of a day taken at limit 2), tpm, ipm, bs, count 1, bp '', then instance 'a'.
    const head = Buffer.alloc(7 * 8)
    ;[now + DAY, 0, now + DAY / 2, 0, 0, 0, 1].forEach((v, i) => head.writeDoubleLE(v, i * 8))
    const inst = Buffer.alloc(4 * 8)
    ;[0, 0, 0, 0].forEach((v, i) => inst.writeDoubleLE(v, i * 8))
    await redis.set(scope.key, Buffer.concat([head, Buffer.from('\0'), Buffer.from('a\0'), inst]), 'PX', DAY)
    try {
      const outcome = await govern('a', now, null, [{ scope, rates: [{ rule: 'rpd', unit: 'requests', limit: 2, periodMs: DAY, cost: 1 }], slots: null, budget: null }])
      expect(outcome!.status).toBe(1)
      expect((await readState(scope.key))!).toMatchObject({ tats: { rpd: now + DAY }, limits: { rpm: 0, rpd: 2, tpm: 0, ipm: 0 } })
    } finally {
      await redis.del(scope.key)
    }
  })

  test('a state kept as a hash (the layout before) is read once and carries on as the string', async () => {
    const t = `hash-${crypto.randomUUID()}`
    const scope: Scope = { kind: 'key', tag: t, key: `conduit:gov:{${t}}:k`, label: 'this key', keyId: t }
    const now = 7_000_000
    // Instance a holds the only slot and 600 of 1,000 (100 spent), its last batch was 3, and the day's one request is taken.
    await redis.hset(scope.key, { rpd: now + DAY - 1, bp: 'total', bs: 100, 'n.a': 1, 'r.a': 600, 'e.a': now + 30_000, 'q.a': 3, x: now + DAY })
    try {
      const claims: ScopeClaim[] = [
        { scope, rates: [{ rule: 'rpd', unit: 'requests', limit: 1, periodMs: DAY, cost: 1 }], slots: 1, budget: { limitMicros: 1_000, cost: 600, period: 'total', since: 0, ttlMs: 7 * DAY } },
      ]
      const admissions = [{ claims, shadow: false, loads: null }]
      const { keys, argv } = encodeCall('b', 30_000, null, admissions)
      const [outcome] = decodeReply(admissions, (await redis.callBuffer('EVALSHA', [sha, keys.length, ...keys, ...argv, now])) as Buffer)
      expect(outcome!.status).toBe(0)
      expect(outcome!.scopes[0]!.rates[0]!.allowed).toBe(false)
      expect(outcome!.scopes[0]!.slotTaken).toBe(false)
      expect(outcome!.scopes[0]!.budget).toEqual({ loaded: true, ok: false, left: 300, held: 600 })
      expect(await redis.type(scope.key)).toBe('string')
      expect(await redis.pttl(scope.key)).toBeGreaterThan(0)
      const state = (await readState(scope.key))!
      expect(state).toMatchObject({ bs: 100, bp: 'total', tats: { rpm: 0, rpd: now + DAY - 1, tpm: 0, ipm: 0 } })
      expect(state.instances.a).toEqual({ n: 1, r: 600, e: now + 30_000, q: 3 })
      // Batch 3 of a was applied under the hash: sent again, it is still skipped.
      const again = encodeCall('a', 30_000, { seq: 3, deltas: [{ scope, holds: 1, reserved: 600, spent: 600, period: 'total', adjustments: new Map(), absolute: null }] }, [])
      await redis.callBuffer('EVALSHA', [sha, again.keys.length, ...again.keys, ...again.argv, now + 1])
      expect((await readState(scope.key))!).toMatchObject({ bs: 100, instances: { a: { n: 1, r: 600 } } })
    } finally {
      await redis.del(scope.key)
    }
  })

  test('a call with more arguments than Lua takes from one C call (a burst batched under load) decides each admission in order', async () => {
    // 600 admissions: 8,400 arguments, unpacked 4,000 at a time.
    const t = `big-${crypto.randomUUID()}`
    const scope: Scope = { kind: 'key', tag: t, key: `conduit:gov:{${t}}:k`, label: 'this key', keyId: t }
    const rates = [
      { rule: 'rpm' as const, unit: 'requests' as const, limit: 250, periodMs: MINUTE, cost: 1 },
      { rule: 'rpd' as const, unit: 'requests' as const, limit: 1_000, periodMs: DAY, cost: 1 },
    ]
    const admissions = Array.from({ length: 600 }, () => ({ claims: [{ scope, rates, slots: null, budget: null }], shadow: false, loads: null }))
    const now = 5_000_000
    const local = new LocalState(() => now)
    try {
      const { keys, argv } = encodeCall('big', 30_000, null, admissions)
      const there = decodeReply(admissions, (await redis.callBuffer('EVALSHA', [sha, keys.length, ...keys, ...argv, now])) as Buffer)
      expect(there).toEqual(admissions.map((a) => local.admit(a.claims, false)))
      expect(there.filter((o) => o.status === 1).length).toBe(250)
      expect(there[249]!.scopes[0]!.rates[0]!.remaining).toBe(0)
    } finally {
      await redis.del(scope.key)
    }
  })
})
