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
 * KEYS: the scope hashes. ARGV: the arguments packed (see encodeCall): instance, lease ms, batch number, then the
 *   settlements count, (key index, holds, reserved, period, spent, absolute n or -1, absolute r, adjustment count,
 *   (rule, limit, period ms, units)…)…
 * and the admissions
 *   count, (shadow, scope count, (key index, rate count, (rule, limit, period ms, cost)…, max in flight or 0,
 *   budget limit or -1 [, cost, period, ttl ms, spend to load or -1])…)…
 * Each admission is all or nothing over its scopes. Reply, per admission: its status (1 admitted; 2 admitted
 * but the shadow limits refused, so only budgets were taken; 0 refused; -1 a budget is not loaded), then per
 * scope 4 numbers per rate (allowed, remaining, reset ms, retry-after ms), 1 for a slot (taken) and 2 for a
 * budget (1 ok / 0 refused / -1 not loaded, micro-dollars left). The numbers come packed as little-endian doubles
 * in one string: as an array, the gateway decoded them one reply element at a time (about 1 µs a request at c=64).
 */
export const GOVERN = `-- ARGV: a struct format, one letter an argument (d a double, s a string), and the arguments packed by it.
-- Unpacked in C, the numbers stay numbers: decoding JSON was a tenth of the script's instructions, much of it in
-- strtod. At most LUAI_MAXCSTACK (8000) values come back from one C call.
local CHUNK = 4000
-- Locals: each use of math.max was two table lookups besides the call.
local max, floor, ceil = math.max, math.floor, math.ceil
local F, B = ARGV[1], ARGV[2]
local A, N = nil, #F - 1
if N <= CHUNK then A = { struct.unpack(F, B) } else
  A = {}
  local pos = 1
  for at = 0, N - 1, CHUNK do
    local k = math.min(CHUNK, N - at)
    local v = { struct.unpack('<' .. string.sub(F, 2 + at, 1 + at + k), B, pos) }
    for j = 1, k do A[at + j] = v[j] end
    pos = v[k + 1]
  end
end
${NOW}
local inst, lease, seq = A[1], A[2], A[3]
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
  -- Every field is a number but the budget's period: converted once here, not at each use.
  for j = 1, #h, 2 do
    local k = h[j]
    if k == 'bp' then f.bp = h[j + 1] else f[k] = tonumber(h[j + 1]) end
  end
  s = { f = f, out = {}, n = 0, r = 0, need = 0, fresh = (f[QF] or 0) < seq }
  for k, v in pairs(f) do
    if string.byte(k, 2) == 46 and string.byte(k) == 101 then
      local id, until_ = string.sub(k, 3), v
      if until_ > now or id == inst then
        s.n = s.n + (f['n.' .. id] or 0)
        s.r = s.r + (f['r.' .. id] or 0)
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
for _ = 1, A[a] do
  local s = state(A[a + 1])
  local holds, reserved, period, spent = A[a + 2], A[a + 3], A[a + 4], A[a + 5]
  local absN, absR, adjustments = A[a + 6], A[a + 7], A[a + 8]
  a = a + 8
  if s.fresh then
    for _ = 1, adjustments do
      local rule, limit, per, units = A[a + 1], A[a + 2], A[a + 3], A[a + 4]
      local tat = max(s.f[rule] or now, now) + per * units / limit
      if tat <= now then
        put(s, rule, false)
      else
        put(s, rule, tat)
        s.need = max(s.need, tat - now)
      end
      a = a + 4
    end
    local n0, r0 = s.f[NF] or 0, s.f[RF] or 0
    local n1, r1 = max(0, n0 - holds), max(0, r0 - reserved)
    if absN >= 0 then n1, r1 = absN, absR end
    s.n, s.r = s.n - n0 + n1, s.r - r0 + r1
    put(s, NF, n1)
    put(s, RF, r1)
    if spent > 0 and s.f.bp == period then put(s, 'bs', s.f.bs + spent) end
    s.settled = true
  else
    a = a + 4 * adjustments
  end
end

-- What an admission takes once all its scopes are decided: (scope, rule, TAT) for each rate that fits, and (scope,
-- slot asked, reserved or false, ttl or false) for each scope. Flat, and reused by the next admission: Lua 5.1 grows
-- a new table by rehashing it, key by key, and the three an admission made were about a fifth of its instructions.
-- They, the reply and the HSET's arguments start with room for one admission (a constructor of nils sizes a table's
-- array part), rather than growing at 1, 2, 4, 8 and 16: 249k -> 233k instructions a call of one admission.
local tats, takes = {nil, nil, nil, nil, nil, nil, nil, nil}, {nil, nil, nil, nil, nil, nil, nil, nil}
local reply, nr = {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}, 0
a = a + 1
for _ = 1, A[a] do
  local shadow, count = A[a + 1] == 1, A[a + 2]
  a = a + 2
  nr = nr + 1
  local head = nr
  reply[head] = 0
  local limited, unloaded, broke = false, false, false
  local nt, nk = 0, 0
  for _ = 1, count do
    local s = state(A[a + 1])
    local rates = A[a + 2]
    a = a + 2
    for _ = 1, rates do
      local rule, limit, per, cost = A[a + 1], A[a + 2], A[a + 3], A[a + 4]
      a = a + 4
      local debt = max(0, (s.f[rule] or now) - now)
      local horizon = debt + per * cost / limit
      if horizon > per then
        limited = true
        reply[nr + 1], reply[nr + 2], reply[nr + 3], reply[nr + 4] = 0, max(0, floor((per - debt) * limit / per + 1e-9)), ceil(debt), ceil(horizon - per)
      else
        reply[nr + 1], reply[nr + 2], reply[nr + 3], reply[nr + 4] = 1, max(0, floor((per - horizon) * limit / per + 1e-9)), ceil(horizon), 0
        tats[nt + 1], tats[nt + 2], tats[nt + 3] = s, rule, now + horizon
        nt = nt + 3
      end
      nr = nr + 4
    end
    local slots, budget = A[a + 1], A[a + 2]
    a = a + 2
    if slots > 0 then
      nr = nr + 1
      if s.n < slots then reply[nr] = 1 else
        limited = true
        reply[nr] = 0
      end
    end
    local reserved, until_ = false, false
    if budget >= 0 then
      local cost, period, ttl, load = A[a + 1], A[a + 2], A[a + 3], A[a + 4]
      a = a + 4
      if s.f.bp ~= period and load >= 0 then
        put(s, 'bp', period)
        put(s, 'bs', load)
        s.need = max(s.need, ttl)
      end
      if s.f.bp ~= period then
        unloaded = true
        reply[nr + 1], reply[nr + 2] = -1, 0
      else
        local left = budget - s.f.bs - s.r
        if left <= 0 or cost > left then
          broke = true
          reply[nr + 1], reply[nr + 2] = 0, max(0, left)
        else
          reply[nr + 1], reply[nr + 2] = 1, left - cost
          reserved, until_ = cost, ttl
        end
      end
      nr = nr + 2
    end
    takes[nk + 1], takes[nk + 2], takes[nk + 3], takes[nk + 4] = s, slots > 0, reserved, until_
    nk = nk + 4
  end
  local status = 1
  if limited and not shadow then status = 0 elseif unloaded then status = -1 elseif broke then status = 0 elseif limited then status = 2 end
  reply[head] = status
  if status == 1 then
    for j = 1, nt, 3 do
      local s, tat = tats[j], tats[j + 2]
      put(s, tats[j + 1], tat)
      s.need = max(s.need, tat - now)
    end
  end
  if status > 0 then
    for j = 1, nk, 4 do
      local s, reserved, ttl = takes[j], takes[j + 2], takes[j + 3]
      if reserved or (status == 1 and takes[j + 1]) then
        local cost = reserved or 0
        s.n, s.r = s.n + 1, s.r + cost
        put(s, NF, (s.f[NF] or 0) + 1)
        put(s, RF, (s.f[RF] or 0) + cost)
        if ttl then s.need = max(s.need, ttl) end
      end
    end
  end
end

for i, s in pairs(states) do
  if s.settled then put(s, QF, seq) end
  if s.f[NF] then
    if s.f[NF] > 0 or (s.f[RF] or 0) > 0 then
      -- Renewed once a third of the lease has passed, not at every call.
      if (s.f[EF] or 0) < now + lease * 2 / 3 then put(s, EF, now + lease) end
      s.need = max(s.need, lease)
    elseif s.out[NF] ~= nil then
      put(s, NF, false)
      put(s, RF, false)
    end
  end
  local set, del = {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}, {}
  for k, v in pairs(s.out) do
    if v == false then del[#del + 1] = k else
      set[#set + 1] = k
      set[#set + 1] = v
    end
  end
  if #del > 0 then redis.call('HDEL', KEYS[i], unpack(del)) end
  if #set > 0 then
    local x = s.f.x or 0
    if x == 0 or now + s.need > x then
      local need = max(s.need, 60000)
      x = now + need + need / 10
      set[#set + 1] = 'x'
      set[#set + 1] = x
      redis.call('HSET', KEYS[i], unpack(set))
      redis.call('PEXPIRE', KEYS[i], ceil(x - now))
    else
      redis.call('HSET', KEYS[i], unpack(set))
    end
  end
end
local packed = {}
for at = 1, nr, CHUNK do
  local k = math.min(CHUNK, nr - at + 1)
  packed[#packed + 1] = struct.pack('<' .. string.rep('d', k), unpack(reply, at, at + k - 1))
end
return table.concat(packed)`
