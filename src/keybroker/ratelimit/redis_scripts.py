"""The bucket arithmetic of ``bucket.py`` in Lua: Redis decides atomically for every gateway.

    >>> script = client.register_script(ACQUIRE)
    >>> granted, wait_ms, reason, index, banned_until = await script(keys=..., args=...)

Each budget is one Redis string holding its shape, capacity, window, margin
and state as one MessagePack array (numbers as 64-bit floats or integers,
so every value survives the round trip exactly; the space-separated text
that earlier versions wrote is still read); the functions below are line-for-line ports of
``WindowBucket``, ``FixedWindowBucket`` and ``DecayingCounter``, and a test
runs the same random spends through both and compares every answer. A
script runs alone on the server, so "does every charge fit? then take them
all" is one indivisible step for all gateways together.

Keys are passed in KEYS (none is computed inside a script). Times are the
calling gateway's clock in ms since the epoch: hosts must keep NTP time,
which the exchanges demand anyway for signed timestamps, and the margins
(up to a second) absorb the rest. Every state key expires after two idle
windows, when everything it counted has expired anyway.
"""

from __future__ import annotations

PRELUDE = r"""
local EPS = 1e-9
local SLOTS_PER_WINDOW = 50
local OLDEST_READING_MS = 15000
local FAR_PAST = -9.0e18

local function fdiv(a, b) return math.floor(a / b) end

local function slot_size(window)
  local target = math.max(1, fdiv(window, SLOTS_PER_WINDOW))
  for size = target, 1, -1 do
    if window % size == 0 then return size end
  end
  return 1
end

local function reading_age(window) return math.min(OLDEST_READING_MS, fdiv(window, 4)) end

local function num(x) return string.format('%.17g', x) end

-- state: {shape, capacity, window, margin, ...}
local function new_bucket(shape, capacity, window, margin)
  local b = {shape = shape, c = capacity, w = window, m = margin}
  if shape == 'w' then
    b.s = slot_size(window); b.total = 0; b.slots = {}
  elseif shape == 'f' then
    b.oldest = FAR_PAST; b.counts = {}
  else
    b.level = 0; b.last = nil
  end
  return b
end

-- A bucket is stored as one MessagePack array (cmsgpack, in C: a tenth of what parsing and
-- formatting text in Lua cost per budget): shape, capacity, window, margin, then
-- w: total, slot, amount, ...   f: oldest, index, count, ...   d: level, last (false: none).
-- Text (the same fields, space-separated), as gateways before it wrote, is still read.
local function from_text(text)
  local t = {}
  for token in string.gmatch(text, '%S+') do t[#t + 1] = tonumber(token) or token end
  if t[1] == 'd' and t[6] == 'n' then t[6] = false end
  return t
end

local function decode(text)
  local t
  if string.find(text, '^[wfd] ') then t = from_text(text) else t = cmsgpack.unpack(text) end
  local b = new_bucket(t[1], t[2], t[3], t[4])
  if b.shape == 'w' then
    b.total = t[5]
    for i = 6, #t - 1, 2 do b.slots[#b.slots + 1] = {t[i], t[i + 1]} end
  elseif b.shape == 'f' then
    b.oldest = t[5]
    for i = 6, #t - 1, 2 do b.counts[t[i]] = t[i + 1] end
  else
    b.level = t[5]
    if t[6] then b.last = t[6] end
  end
  return b
end

local function encode(b)
  local out = {b.shape, b.c, b.w, b.m}
  if b.shape == 'w' then
    out[5] = b.total
    for _, slot in ipairs(b.slots) do
      out[#out + 1] = slot[1]; out[#out + 1] = slot[2]
    end
  elseif b.shape == 'f' then
    out[5] = b.oldest
    for index, count in pairs(b.counts) do
      out[#out + 1] = index; out[#out + 1] = count
    end
  else
    out[5] = b.level
    out[6] = b.last or false
  end
  return cmsgpack.pack(out)
end

-- WindowBucket ---------------------------------------------------------------------------
local function w_expiry(b, slot) return (slot + 1) * b.s + b.w + b.m end

local function w_expire(b, now)
  local first = 1
  while first <= #b.slots and w_expiry(b, b.slots[first][1]) <= now do
    b.total = b.total - b.slots[first][2]
    first = first + 1
  end
  if first > 1 then
    local rest = {}
    for j = first, #b.slots do rest[#rest + 1] = b.slots[j] end
    b.slots = rest
  end
  if #b.slots == 0 then b.total = 0 end
end

local function w_used(b, now) w_expire(b, now); return b.total end

local function w_wait(b, amount, now)
  if amount > b.c + EPS then return nil end
  w_expire(b, now)
  local excess = b.total + amount - b.c
  if excess <= EPS then return 0 end
  for _, slot in ipairs(b.slots) do
    excess = excess - slot[2]
    if excess <= EPS then return math.max(1, w_expiry(b, slot[1]) - now) end
  end
  return nil
end

local function w_take(b, amount, now)
  w_expire(b, now)
  if amount <= 0 then return end
  local slot = fdiv(now, b.s)
  local newest = b.slots[#b.slots]
  if newest and newest[1] >= slot then
    newest[2] = newest[2] + amount
  else
    b.slots[#b.slots + 1] = {slot, amount}
  end
  b.total = b.total + amount
end

local function w_correct(b, used, now)
  w_expire(b, now)
  local since = now - b.w - reading_age(b.w)
  local ours = 0
  for _, slot in ipairs(b.slots) do
    if (slot[1] + 1) * b.s > since then ours = ours + slot[2] end
  end
  local missing = used - ours
  if missing > EPS then w_take(b, missing, now) end
end

-- FixedWindowBucket -----------------------------------------------------------------------
local function f_forget(b, now)
  local oldest = fdiv(now - b.m, b.w) - 1
  if oldest > b.oldest then
    b.oldest = oldest
    for index, _ in pairs(b.counts) do
      if index < oldest then b.counts[index] = nil end
    end
  end
end

local function f_fits(b, amount, at)
  local limit = b.c + EPS
  for i = fdiv(at - b.m, b.w), fdiv(at + b.m, b.w) do
    if (b.counts[i] or 0) + amount > limit then return false end
  end
  return true
end

local function f_used(b, now) f_forget(b, now); return b.counts[fdiv(now, b.w)] or 0 end

local function f_wait(b, amount, now)
  if amount > b.c + EPS then return nil end
  f_forget(b, now)
  if f_fits(b, amount, now) then return 0 end
  local index = fdiv(now - b.m, b.w)
  local last = index
  for i, _ in pairs(b.counts) do if i > last then last = i end end
  while index <= last do
    index = index + 1
    local at = math.max(now, index * b.w + b.m)
    if f_fits(b, amount, at) then return math.max(1, at - now) end
  end
  return nil
end

local function f_take(b, amount, now)
  f_forget(b, now)
  if amount <= 0 then return end
  for i = fdiv(now - b.m, b.w), fdiv(now + b.m, b.w) do
    b.counts[i] = (b.counts[i] or 0) + amount
  end
end

local function f_correct(b, used, now)
  f_forget(b, now)
  local index = fdiv(now, b.w)
  local known = b.counts[index] or 0
  if now - index * b.w < reading_age(b.w) + b.m then
    known = math.max(known, b.counts[index - 1] or 0)
  end
  if used > known + EPS then b.counts[index] = math.max(b.counts[index] or 0, used) end
end

-- DecayingCounter --------------------------------------------------------------------------
local function d_rate(b) return b.c / (b.w + b.m) end

local function d_drain(b, now)
  if b.last ~= nil and now > b.last then
    b.level = math.max(0, b.level - (now - b.last) * d_rate(b))
  end
  if b.last == nil or now > b.last then b.last = now end
end

local function d_used(b, now) d_drain(b, now); return b.level end

local function d_wait(b, amount, now)
  if amount > b.c + EPS then return nil end
  d_drain(b, now)
  local excess = b.level + amount - b.c
  if excess <= EPS then return 0 end
  return math.max(1, math.ceil(excess / d_rate(b) - 1e-6))
end

local function d_take(b, amount, now) d_drain(b, now); b.level = b.level + math.max(0, amount) end

local function d_correct(b, used, now) d_drain(b, now); b.level = math.max(b.level, used) end

-- dispatch --------------------------------------------------------------------------------
local function used_of(b, now)
  if b.shape == 'w' then return w_used(b, now) elseif b.shape == 'f' then return f_used(b, now) end
  return d_used(b, now)
end
local function wait_of(b, amount, now)
  if b.shape == 'w' then return w_wait(b, amount, now) end
  if b.shape == 'f' then return f_wait(b, amount, now) end
  return d_wait(b, amount, now)
end
local function take(b, amount, now)
  if b.shape == 'w' then w_take(b, amount, now) elseif b.shape == 'f' then f_take(b, amount, now)
  else d_take(b, amount, now) end
end
local function correct(b, used, now)
  if b.shape == 'w' then w_correct(b, used, now) elseif b.shape == 'f' then f_correct(b, used, now)
  else d_correct(b, used, now) end
end

-- The stored bucket for KEY, or a new one; a changed capacity is taken over (bucket.reconfigure),
-- a changed shape or window starts afresh (as MemoryLimiter makes a new bucket).
local function load_text(text, shape, capacity, window, margin)
  if text then
    local b = decode(text)
    if b.shape == shape and b.w == window and b.m == margin then
      b.c = capacity
      return b
    end
  end
  return new_bucket(shape, capacity, window, margin)
end

local function load(key, shape, capacity, window, margin)
  return load_text(redis.call('GET', key), shape, capacity, window, margin)
end

local function save(key, b)
  redis.call('SET', key, encode(b), 'PX', math.floor(2 * (b.w + b.m) + 1000))
end
"""

TRY_ALL = r"""
-- try_all(K, A): take every charge now, or say how long until they all fit; nothing is taken
-- unless everything fits.
-- K: n budgets, then p pause keys, then the breaker keys.
-- A: now, n, p, then per budget: amount, shape, capacity, window_ms, margin_ms.
-- Returns {granted 1|0|-1, wait_ms, reason, budget index, banned_until}; -1: never fits.
local function try_all(K, A)
  local now = tonumber(A[1])
  local n = tonumber(A[2])
  local p = tonumber(A[3])
  local buckets, amounts = {}, {}
  local longest, reason, which, banned = 0, '', 0, 0
  local stored = redis.call('MGET', unpack(K))  -- budgets, pauses, breakers: one call
  for i = 1, n do
    local at = 4 + (i - 1) * 5
    local amount = tonumber(A[at])
    local b = load_text(stored[i], A[at + 1], tonumber(A[at + 2]), tonumber(A[at + 3]),
                        tonumber(A[at + 4]))
    local wait = wait_of(b, amount, now)
    if wait == nil then return {-1, 0, 'budget', i, 0} end
    if wait > longest then longest, reason, which = wait, 'budget', i end
    buckets[i], amounts[i] = b, amount
  end
  for j = n + 1, n + p do
    local untl = tonumber(stored[j] or '0')
    if untl - now > longest then longest, reason, which = untl - now, 'pause', 0 end
  end
  for j = n + p + 1, #K do
    local untl = tonumber(stored[j] or '0')
    if untl > now then
      banned = math.max(banned, untl)
      if untl - now > longest then longest, reason, which = untl - now, 'breaker', 0 end
    end
  end
  if longest > 0 then return {0, longest, reason, which, banned} end
  for i = 1, n do
    take(buckets[i], amounts[i], now)
    save(K[i], buckets[i])
  end
  return {1, 0, '', 0, banned}
end
"""

ACQUIRE = PRELUDE + TRY_ALL + "\nreturn try_all(KEYS, ARGV)\n"

CORRECT = (
    PRELUDE
    + r"""
-- KEYS: budgets (one may come more than once, oldest reading first); ARGV: per budget:
-- used, shape, capacity, window_ms, margin_ms, add, and the time it was read (ms).
-- add = 1 records ``used`` as spent then (a spend made while the store was unreachable);
-- add = 0 raises the budget to the exchange's reading (bucket.correct), never lowers it.
for i = 1, #KEYS do
  local at = 1 + (i - 1) * 7
  local used, now = tonumber(ARGV[at]), tonumber(ARGV[at + 6])
  local b = load(KEYS[i], ARGV[at + 1], tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]),
                 tonumber(ARGV[at + 4]))
  if ARGV[at + 5] == '1' then take(b, used, now) else correct(b, used, now) end
  save(KEYS[i], b)
end
return #KEYS
"""
)

REFUND = (
    PRELUDE
    + r"""
-- KEYS: budgets; ARGV: now, then per budget: amount, shape, capacity, window_ms, margin_ms,
-- taken_at. Gives back what try_all took at taken_at for an order the policy refused after
-- its budget was taken with its admission (it never left the machine), as far as that spend
-- still counts: never below zero, nothing for a spend already expired or a budget gone.
local now = tonumber(ARGV[1])
local function untake(b, amount, at)
  if b.shape == 'w' then
    w_expire(b, now)
    local slot = fdiv(at, b.s)
    for _, s in ipairs(b.slots) do
      if s[1] == slot then
        local back = math.min(amount, s[2])
        s[2] = s[2] - back
        b.total = b.total - back
        return
      end
    end
  elseif b.shape == 'f' then
    f_forget(b, now)
    for i = fdiv(at - b.m, b.w), fdiv(at + b.m, b.w) do
      if b.counts[i] then b.counts[i] = math.max(0, b.counts[i] - amount) end
    end
  else
    d_drain(b, now)
    local left = amount - math.max(0, now - at) * d_rate(b)
    if left > 0 then b.level = math.max(0, b.level - left) end
  end
end
local given = 0
for i = 1, #KEYS do
  local at = 2 + (i - 1) * 6
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local b = load(KEYS[i], ARGV[at + 1], tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]),
                   tonumber(ARGV[at + 4]))
    untake(b, tonumber(ARGV[at]), tonumber(ARGV[at + 5]))
    save(KEYS[i], b)
    given = given + 1
  end
end
return given
"""
)

PEEK = (
    PRELUDE
    + r"""
-- KEYS: budgets; ARGV: now. Returns each budget's use now as text ('' for none stored).
local now = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local text = redis.call('GET', KEYS[i])
  if text then out[i] = num(used_of(decode(text), now)) else out[i] = '' end
end
return out
"""
)

RAISE_UNTIL = r"""
-- KEYS[1]: a pause or breaker; ARGV: now, until. Only ever moves the end later.
local now, untl = tonumber(ARGV[1]), tonumber(ARGV[2])
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > old and untl > now then
  redis.call('SET', KEYS[1], string.format('%d', untl), 'PX', math.floor(untl - now) + 1000)
  return untl
end
return old
"""
