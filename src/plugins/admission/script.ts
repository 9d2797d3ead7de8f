/** Redis's clock; tests swap this line for one that reads a chosen instant from the last argument. */
export const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/**
 * One call of this script settles what this instance's finished requests owe and admits its waiting requests,
 * for the scopes of one Redis Cluster slot (or every scope, on a single Redis). Each scope is one hash, read
 * once (HGETALL) and written once (HSET), whatever the number of requests:
 *
 *   rpm, rpd, tpm   the rules' TATs (GCRA, ms on Redis's clock: the arithmetic of gcra.ts, step for step)
 *   bp, bs          the budget's period and its spend (micro-dollars), summed from the ledger when missing
 *   n.<i> r.<i>     per gateway instance i: its requests in flight here and the micro-dollars they reserve
 *   e.<i>           until when those count: renewed while they run; past it the instance is gone (crashed)
 *                   and what it held comes back
 *   q.<i>           the last settlement batch of i applied here: a batch sent again after a lost reply is
 *                   skipped, so a settlement counts once
 *   x               the expiry last set: PEXPIRE only when the state must outlive it (TATs, leases, a
 *                   budget's period), so the hash expires on its own when idle
 *
 * KEYS: the scope hashes. ARGV: one JSON array holding these: instance, lease ms, batch number, then the settlements
 *   count, (key index, holds, reserved, period, spent, absolute n or -1, absolute r, adjustment count,
 *   (rule, limit, period ms, units)…)…
 * and the admissions
 *   count, (shadow, scope count, (key index, rate count, (rule, limit, period ms, cost)…, max in flight or 0,
 *   budget limit or -1 [, cost, period, ttl ms, spend to load or -1])…)…
 * Each admission is all or nothing over its scopes. Reply, per admission: its status (1 admitted; 2 admitted
 * but the shadow limits refused, so only budgets were taken; 0 refused; -1 a budget is not loaded), then per
 * scope 4 numbers per rate (allowed, remaining, reset ms, retry-after ms), 1 for a slot (taken) and 2 for a
 * budget (1 ok / 0 refused / -1 not loaded, micro-dollars left).
 */
export const GOVERN = `-- One JSON array: hundreds of separate arguments cost the client more to write, and splitting one string in Lua
-- cost Redis twice what cjson's decoder (in C, numbers already numbers) does.
local A = cjson.decode(ARGV[1])
${NOW}
local inst, lease, seq = A[1], tonumber(A[2]), tonumber(A[3])
local NF, RF, EF, QF = 'n.' .. inst, 'r.' .. inst, 'e.' .. inst, 'q.' .. inst
local states = {}

local function put(s, k, v)
  s.f[k] = v
  s.out[k] = v
end

local function state(i)
  local s = states[i]
  if s then return s end
  local h = redis.call('HGETALL', KEYS[i])
  local f = {}
  for j = 1, #h, 2 do f[h[j]] = h[j + 1] end
  s = { f = f, out = {}, n = 0, r = 0, need = 0, fresh = tonumber(f[QF] or 0) < seq }
  for k, v in pairs(f) do
    if string.byte(k, 2) == 46 and string.byte(k) == 101 then
      local id, until_ = string.sub(k, 3), tonumber(v)
      if until_ > now or id == inst then
        s.n = s.n + tonumber(f['n.' .. id] or 0)
        s.r = s.r + tonumber(f['r.' .. id] or 0)
      elseif f['n.' .. id] or f['r.' .. id] or until_ < now - 3600000 then
        s.out['n.' .. id] = false
        s.out['r.' .. id] = false
        if until_ < now - 3600000 then
          s.out[k] = false
          s.out['q.' .. id] = false
        end
      end
    end
  end
  states[i] = s
  return s
end

local a = 4
for _ = 1, tonumber(A[a]) do
  local s = state(tonumber(A[a + 1]))
  local holds, reserved, period, spent = tonumber(A[a + 2]), tonumber(A[a + 3]), A[a + 4], tonumber(A[a + 5])
  local absN, absR, adjustments = tonumber(A[a + 6]), tonumber(A[a + 7]), tonumber(A[a + 8])
  a = a + 8
  if s.fresh then
    for _ = 1, adjustments do
      local rule, limit, per, units = A[a + 1], tonumber(A[a + 2]), tonumber(A[a + 3]), tonumber(A[a + 4])
      local tat = math.max(tonumber(s.f[rule] or now), now) + per * units / limit
      if tat <= now then
        put(s, rule, false)
      else
        put(s, rule, tat)
        s.need = math.max(s.need, tat - now)
      end
      a = a + 4
    end
    local n0, r0 = tonumber(s.f[NF] or 0), tonumber(s.f[RF] or 0)
    local n1, r1 = math.max(0, n0 - holds), math.max(0, r0 - reserved)
    if absN >= 0 then n1, r1 = absN, absR end
    s.n, s.r = s.n - n0 + n1, s.r - r0 + r1
    put(s, NF, n1)
    put(s, RF, r1)
    if spent > 0 and s.f.bp == period then put(s, 'bs', tonumber(s.f.bs) + spent) end
    s.settled = true
  else
    a = a + 4 * adjustments
  end
end

local reply = {}
a = a + 1
for _ = 1, tonumber(A[a]) do
  local shadow, count = A[a + 1] == 1, tonumber(A[a + 2])
  a = a + 2
  local head = #reply + 1
  reply[head] = 0
  local limited, unloaded, broke = false, false, false
  local plans = {}
  for k = 1, count do
    local s = state(tonumber(A[a + 1]))
    local p = { s = s, rates = {} }
    local rates = tonumber(A[a + 2])
    a = a + 2
    for _ = 1, rates do
      local rule, limit, per, cost = A[a + 1], tonumber(A[a + 2]), tonumber(A[a + 3]), tonumber(A[a + 4])
      a = a + 4
      local debt = math.max(0, tonumber(s.f[rule] or now) - now)
      local horizon = debt + per * cost / limit
      local n = #reply
      if horizon > per then
        limited = true
        reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4] = 0, math.max(0, math.floor((per - debt) * limit / per + 1e-9)), math.ceil(debt), math.ceil(horizon - per)
      else
        reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4] = 1, math.max(0, math.floor((per - horizon) * limit / per + 1e-9)), math.ceil(horizon), 0
        p.rates[#p.rates + 1] = rule
        p.rates[#p.rates + 1] = now + horizon
      end
    end
    local slots = tonumber(A[a + 1])
    local budget = tonumber(A[a + 2])
    a = a + 2
    if slots > 0 then
      p.slot = true
      if s.n < slots then reply[#reply + 1] = 1 else
        limited = true
        reply[#reply + 1] = 0
      end
    end
    if budget >= 0 then
      local cost, period, ttl, load = tonumber(A[a + 1]), A[a + 2], tonumber(A[a + 3]), tonumber(A[a + 4])
      a = a + 4
      if s.f.bp ~= period and load >= 0 then
        put(s, 'bp', period)
        put(s, 'bs', load)
        s.need = math.max(s.need, ttl)
      end
      local n = #reply
      if s.f.bp ~= period then
        unloaded = true
        reply[n + 1], reply[n + 2] = -1, 0
      else
        local left = budget - tonumber(s.f.bs) - s.r
        if left <= 0 or cost > left then
          broke = true
          reply[n + 1], reply[n + 2] = 0, math.max(0, left)
        else
          reply[n + 1], reply[n + 2] = 1, left - cost
          p.cost, p.ttl = cost, ttl
        end
      end
    end
    plans[k] = p
  end
  local status = 1
  if limited and not shadow then status = 0 elseif unloaded then status = -1 elseif broke then status = 0 elseif limited then status = 2 end
  reply[head] = status
  if status > 0 then
    for k = 1, count do
      local p = plans[k]
      local s = p.s
      if status == 1 then
        for j = 1, #p.rates, 2 do
          put(s, p.rates[j], p.rates[j + 1])
          s.need = math.max(s.need, p.rates[j + 1] - now)
        end
      end
      if p.cost or (status == 1 and p.slot) then
        local cost = p.cost or 0
        s.n, s.r = s.n + 1, s.r + cost
        put(s, NF, tonumber(s.f[NF] or 0) + 1)
        put(s, RF, tonumber(s.f[RF] or 0) + cost)
        if p.ttl then s.need = math.max(s.need, p.ttl) end
      end
    end
  end
end

for i, s in pairs(states) do
  if s.settled then put(s, QF, seq) end
  if s.f[NF] then
    if tonumber(s.f[NF]) > 0 or tonumber(s.f[RF] or 0) > 0 then
      -- Renewed once a third of the lease has passed, not at every call.
      if tonumber(s.f[EF] or 0) < now + lease * 2 / 3 then put(s, EF, now + lease) end
      s.need = math.max(s.need, lease)
    elseif s.out[NF] ~= nil then
      put(s, NF, false)
      put(s, RF, false)
    end
  end
  local set, del = {}, {}
  for k, v in pairs(s.out) do
    if v == false then del[#del + 1] = k else
      set[#set + 1] = k
      set[#set + 1] = v
    end
  end
  if #del > 0 then redis.call('HDEL', KEYS[i], unpack(del)) end
  if #set > 0 then
    local x = tonumber(s.f.x or 0)
    if x == 0 or now + s.need > x then
      local need = math.max(s.need, 60000)
      x = now + need + need / 10
      set[#set + 1] = 'x'
      set[#set + 1] = x
      redis.call('HSET', KEYS[i], unpack(set))
      redis.call('PEXPIRE', KEYS[i], math.ceil(x - now))
    else
      redis.call('HSET', KEYS[i], unpack(set))
    end
  end
end
return reply`
