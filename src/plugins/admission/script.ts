/** Redis's clock; tests swap this line for one that reads a chosen instant from the last argument. */
export const NOW = `local t = redis.call('TIME')
local now = t[1] * 1000 + (t[2] - t[2] % 1000) / 1000`

/**
 * One call of this script settles what this instance's finished requests owe and admits its waiting requests,
 * for the scopes of one Redis Cluster slot (or every scope, on a single Redis). Each scope's state is one string,
 * read once (GET) and written once (SET), whatever the number of requests: numbers packed as little-endian doubles,
 * so that Lua unpacks them in C calls (HEAD and EACH below) instead of converting a hash's fields one by one.
 *
 *   x               the expiry last set: SET's PX only when the state must outlive it (TATs, leases, a budget's
 *                   period), KEEPTTL otherwise, so the state expires on its own when idle
 *   rpm rpd tpm ipm the rules' TATs (GCRA, ms on Redis's clock: the arithmetic of gcra.ts, step for step); 0 is none
 *   bs, bp          the budget's spend (micro-dollars) and its period ('' for none), summed from the ledger when
 *                   missing
 *   per gateway instance i, after the instance count:
 *     n r           its requests in flight here and the micro-dollars they reserve
 *     e             until when those count: renewed while they run; past it the instance is gone (crashed) and
 *                   what it held comes back; 0 is none
 *     q             the last settlement batch of i applied here: a batch sent again after a lost reply is skipped,
 *                   so a settlement counts once
 *   and after them, the limit each rule's TAT was run up under (0: not known): when a key's limit changes, the debt
 *   is counted again in the new limit's units, so the requests it stands for stay used (an rpd raised from 5 to 100
 *   after 5 leaves 95). A state from before them reads as 0s, and a reader from before them ignores them.
 *
 * As a hash of a dozen fields (HGETALL, tonumber each, HSET of what changed, PEXPIRE) a call of one admission took
 * 235k instructions in Redis; as one string, 153k; with no function defined per call and the reply returned as
 * packed, 138k; with no call of math.*, tonumber or pairs(), 131k (bench/redis-script-cost.ts). A state still kept
 * as a hash (the layout before) is read once with HGETALL and written back as a string.
 *
 * KEYS: the scope states. ARGV: the arguments packed (see encodeCall): instance, lease ms, batch number, then the
 *   settlements count, (key index, holds, reserved, period, spent, absolute n or -1, absolute r, adjustment count,
 *   (rule, limit, period ms, units)…)…
 * and the admissions
 *   count, (shadow, scope count, (key index, rate count, (rule, limit, period ms, cost)…, max in flight or 0,
 *   budget limit or -1 [, cost, period, ttl ms, spend to load or -1])…)…
 * Each admission is all or nothing over its scopes. Reply, per admission: its status (1 admitted; 2 admitted
 * but the shadow limits refused, so only budgets were taken; 0 refused; -1 a budget is not loaded), then per
 * scope 4 numbers per rate (allowed, remaining, reset ms, retry-after ms), 1 for a slot (taken) and 3 for a
 * budget (1 ok / 0 refused / -1 not loaded, micro-dollars left, micro-dollars held by requests in flight). The
 * numbers come packed as little-endian doubles in one string: as an array, the gateway decoded them one reply
 * element at a time (about 1 µs a request at c=64).
 */
export const GOVERN = `-- ARGV: a struct format, one letter an argument (d a double, s a string), and the arguments packed by it.
-- Unpacked in C, the numbers stay numbers: decoding JSON was a tenth of the script's instructions, much of it in
-- strtod. At most LUAI_MAXCSTACK (8000) values come back from one C call.
local CHUNK = 4000
-- No math.max, math.floor or math.ceil: each call of a C function costs more than the comparison or the arithmetic
-- that does its work here (floor(y) is y - y % 1, ceil(y) is y + -y % 1, both exact for these magnitudes).
local unpackStruct, packStruct = struct.unpack, struct.pack
local F, B = ARGV[1], ARGV[2]
local A, N = nil, #F - 1
if N <= CHUNK then A = { unpackStruct(F, B) } else
  A = {}
  local pos = 1
  for at = 0, N - 1, CHUNK do
    local k = math.min(CHUNK, N - at)
    local v = { unpackStruct('<' .. string.sub(F, 2 + at, 1 + at + k), B, pos) }
    for j = 1, k do A[at + j] = v[j] end
    pos = v[k + 1]
  end
end
${NOW}
local inst, lease, seq = A[1], A[2], A[3]
local states = {}
local HOUR = 3600000
-- A scope's state: x, the four TATs, bs, the instance count, bp; then each instance's id, n, r, e and q; then the
-- limits of the four TATs. ONE is the format of a state with one instance, the usual one, written without building it.
local HEAD, EACH, LIMITS, ONE = '<ddddddds', '<sdddd', '<dddd', '<ddddddds<sdddd<dddd'
-- Where each rule's limit is kept in a state (a field of its own, as the TATs are).
local LIMIT_OF = { rpm = 'rpmL', rpd = 'rpdL', tpm = 'tpmL', ipm = 'ipmL' }

-- Each scope's state for this call, loaded before anything else: every key of KEYS is named by a settlement or an
-- admission. In a loop rather than a function, as each function defined here is a closure made again at every call.
-- The TATs are fields of the state itself (s.rpm ...; no rule is named like another field), a table fewer per scope.
-- Every field is in the constructor: Lua 5.1 sizes a table's hash part only there, and grows it by rehashing, field
-- by field. The instances are a list, walked by index: pairs() and ipairs() call a C function for every step.
for i = 1, #KEYS do
  local raw = redis.pcall('GET', KEYS[i])
  local x, rpm, rpd, tpm, ipm, bs, bp, I, dirty = 0, 0, 0, 0, 0, 0, '', {}, false
  local rpmL, rpdL, tpmL, ipmL = 0, 0, 0, 0
  if type(raw) == 'string' then
    -- Unpacked into locals, an instance at a time: a table for the values would cost more than the calls.
    local count, at
    x, rpm, rpd, tpm, ipm, bs, count, bp, at = unpackStruct(HEAD, raw)
    for j = 1, count do
      local id, n, r, e, q
      id, n, r, e, q, at = unpackStruct(EACH, raw, at)
      I[j] = { id = id, n = n, r = r, e = e, q = q }
    end
    if at <= #raw then rpmL, rpdL, tpmL, ipmL = unpackStruct(LIMITS, raw, at) end
  elseif raw then
    -- WRONGTYPE: the layout before, a hash with fields rpm..ipm, bs, bp, x, and n.<i> r.<i> e.<i> q.<i> per instance.
    -- Its x is left out, so the string gets an expiry of its own when it is written.
    local h = redis.call('HGETALL', KEYS[i])
    local tat, byId = { rpm = 0, rpd = 0, tpm = 0, ipm = 0 }, {}
    for j = 1, #h, 2 do
      local k, v = h[j], h[j + 1]
      if k == 'bp' then bp = v elseif k == 'bs' then bs = tonumber(v)
      elseif tat[k] then tat[k] = tonumber(v)
      elseif string.byte(k, 2) == 46 then
        local id = string.sub(k, 3)
        local o = byId[id]
        if not o then
          o = { id = id, n = 0, r = 0, e = 0, q = 0 }
          byId[id], I[#I + 1] = o, o
        end
        o[string.sub(k, 1, 1)] = tonumber(v)
      end
    end
    rpm, rpd, tpm, ipm, dirty = tat.rpm, tat.rpd, tat.tpm, tat.ipm, true
  end
  local me
  for j = 1, #I do
    if I[j].id == inst then me = I[j] end
  end
  if not me then
    me = { id = inst, n = 0, r = 0, e = 0, q = 0 }
    I[#I + 1] = me
  end
  local s = { x = x, rpm = rpm, rpd = rpd, tpm = tpm, ipm = ipm, rpmL = rpmL, rpdL = rpdL, tpmL = tpmL, ipmL = ipmL, bs = bs, bp = bp, I = I, me = me, n = 0, r = 0, need = 0, dirty = dirty, fresh = me.q < seq, settled = false }
  for j = 1, #I do
    local o = I[j]
    if o.e > now or o == me then
      s.n = s.n + o.n
      s.r = s.r + o.r
    else
      -- An instance gone for an hour is forgotten, its batch number too.
      local forgotten = o.e > 0 and o.e < now - HOUR
      if o.n ~= 0 or o.r ~= 0 or forgotten then
        o.n, o.r = 0, 0
        if forgotten then o.e, o.q = 0, 0 end
        s.dirty = true
      end
    end
  end
  states[i] = s
end

local a = 4
for _ = 1, A[a] do
  local s = states[A[a + 1]]
  local holds, reserved, period, spent = A[a + 2], A[a + 3], A[a + 4], A[a + 5]
  local absN, absR, adjustments = A[a + 6], A[a + 7], A[a + 8]
  a = a + 8
  if s.fresh then
    for _ = 1, adjustments do
      local rule, limit, per, units = A[a + 1], A[a + 2], A[a + 3], A[a + 4]
      local tat, lk = s[rule], LIMIT_OF[rule]
      if tat < now then tat = now end
      local was = s[lk]
      if was > 0 and was ~= limit then tat = now + (tat - now) * was / limit end
      s[lk] = limit
      tat = tat + per * units / limit
      if tat <= now then
        s[rule] = 0
      else
        s[rule] = tat
        if tat - now > s.need then s.need = tat - now end
      end
      a = a + 4
    end
    local me = s.me
    local n1, r1 = me.n - holds, me.r - reserved
    if n1 < 0 then n1 = 0 end
    if r1 < 0 then r1 = 0 end
    if absN >= 0 then n1, r1 = absN, absR end
    s.n, s.r = s.n - me.n + n1, s.r - me.r + r1
    me.n, me.r = n1, r1
    if spent > 0 and s.bp == period then s.bs = s.bs + spent end
    s.settled, s.dirty = true, true
  else
    a = a + 4 * adjustments
  end
end

-- What an admission takes once all its scopes are decided: (scope, rule, TAT, limit) for each rate that fits, and (scope,
-- slot asked, reserved or false, ttl or false) for each scope. Flat, and reused by the next admission: Lua 5.1 grows
-- a new table by rehashing it, key by key, and the three an admission made were about a fifth of its instructions.
-- They and the reply start with room for one admission (a constructor of nils sizes a table's
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
    local s = states[A[a + 1]]
    local rates = A[a + 2]
    a = a + 2
    for _ = 1, rates do
      local rule, limit, per, cost = A[a + 1], A[a + 2], A[a + 3], A[a + 4]
      a = a + 4
      local debt = s[rule] - now
      if debt < 0 then debt = 0 end
      local was = s[LIMIT_OF[rule]]
      if was > 0 and was ~= limit then debt = debt * was / limit end
      local horizon = debt + per * cost / limit
      if horizon > per then
        limited = true
        local left, wait = (per - debt) * limit / per + 1e-9, horizon - per
        left = left - left % 1
        if left < 0 then left = 0 end
        reply[nr + 1], reply[nr + 2], reply[nr + 3], reply[nr + 4] = 0, left, debt + -debt % 1, wait + -wait % 1
      else
        local left = (per - horizon) * limit / per + 1e-9
        left = left - left % 1
        if left < 0 then left = 0 end
        reply[nr + 1], reply[nr + 2], reply[nr + 3], reply[nr + 4] = 1, left, horizon + -horizon % 1, 0
        tats[nt + 1], tats[nt + 2], tats[nt + 3], tats[nt + 4] = s, rule, now + horizon, limit
        nt = nt + 4
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
      if s.bp ~= period and load >= 0 then
        s.bp, s.bs, s.dirty = period, load, true
        if ttl > s.need then s.need = ttl end
      end
      if s.bp ~= period then
        unloaded = true
        reply[nr + 1], reply[nr + 2], reply[nr + 3] = -1, 0, 0
      else
        local left = budget - s.bs - s.r
        if left <= 0 or cost > left then
          broke = true
          reply[nr + 1], reply[nr + 2], reply[nr + 3] = 0, left > 0 and left or 0, s.r
        else
          reply[nr + 1], reply[nr + 2], reply[nr + 3] = 1, left - cost, s.r
          reserved, until_ = cost, ttl
        end
      end
      nr = nr + 3
    end
    takes[nk + 1], takes[nk + 2], takes[nk + 3], takes[nk + 4] = s, slots > 0, reserved, until_
    nk = nk + 4
  end
  local status = 1
  if limited and not shadow then status = 0 elseif unloaded then status = -1 elseif broke then status = 0 elseif limited then status = 2 end
  reply[head] = status
  if status == 1 then
    for j = 1, nt, 4 do
      local s, rule, tat = tats[j], tats[j + 1], tats[j + 2]
      s[rule], s[LIMIT_OF[rule]], s.dirty = tat, tats[j + 3], true
      if tat - now > s.need then s.need = tat - now end
    end
  end
  if status > 0 then
    for j = 1, nk, 4 do
      local s, reserved, ttl = takes[j], takes[j + 2], takes[j + 3]
      if reserved or (status == 1 and takes[j + 1]) then
        local cost = reserved or 0
        local me = s.me
        s.n, s.r, me.n, me.r, s.dirty = s.n + 1, s.r + cost, me.n + 1, me.r + cost, true
        if ttl and ttl > s.need then s.need = ttl end
      end
    end
  end
end

for i = 1, #KEYS do
  local s = states[i]
  local me = s.me
  if s.settled then me.q = seq end
  if me.n > 0 or me.r > 0 then
    -- Renewed once a third of the lease has passed, not at every call.
    if me.e < now + lease * 2 / 3 then
      me.e, s.dirty = now + lease, true
    end
    if lease > s.need then s.need = lease end
  end
  if s.dirty then
    -- Instances with nothing left to remember are not written.
    local each, count, I = {}, 0, s.I
    for j = 1, #I do
      local o = I[j]
      if o.n ~= 0 or o.r ~= 0 or o.e ~= 0 or o.q ~= 0 then
        each[count * 5 + 1], each[count * 5 + 2], each[count * 5 + 3], each[count * 5 + 4], each[count * 5 + 5] = o.id, o.n, o.r, o.e, o.q
        count = count + 1
      end
    end
    local x = s.x
    local extend = x == 0 or now + s.need > x
    if extend then
      local need = s.need > 60000 and s.need or 60000
      x = now + need + need / 10
    end
    local value
    if count == 1 then
      -- The usual state, packed from its fields: the list would grow past its eight slots for the limits.
      value = packStruct(ONE, x, s.rpm, s.rpd, s.tpm, s.ipm, s.bs, 1, s.bp, each[1], each[2], each[3], each[4], each[5], s.rpmL, s.rpdL, s.tpmL, s.ipmL)
    else
      each[count * 5 + 1], each[count * 5 + 2], each[count * 5 + 3], each[count * 5 + 4] = s.rpmL, s.rpdL, s.tpmL, s.ipmL
      value = packStruct(HEAD .. string.rep(EACH, count) .. LIMITS, x, s.rpm, s.rpd, s.tpm, s.ipm, s.bs, count, s.bp, unpack(each, 1, count * 5 + 4))
    end
    local px = x - now
    if extend then redis.call('SET', KEYS[i], value, 'PX', px + -px % 1) else redis.call('SET', KEYS[i], value, 'KEEPTTL') end
  end
end
-- Redis's Lua hashes every byte of each string it makes: a reply of one chunk is returned as packed, not joined too.
if nr <= CHUNK then return packStruct('<' .. string.rep('d', nr), unpack(reply, 1, nr)) end
local packed = {}
for at = 1, nr, CHUNK do
  local k = math.min(CHUNK, nr - at + 1)
  packed[#packed + 1] = struct.pack('<' .. string.rep('d', k), unpack(reply, at, at + k - 1))
end
return table.concat(packed)`
