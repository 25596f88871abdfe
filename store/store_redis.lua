#!lua
-- store_redis.lua - the store's semantics inside Redis, so that check-and-apply
-- is atomic: one call applies a whole batch (or claims, transfers, trims).
-- Every key starts with KEYS[1] = rw:{vN}, so a vertex lives in one hash slot
-- and a Redis Cluster could spread vertices. Kinds and codes match store_int.h
-- and store.h. Redis does not roll a script back, so a batch is validated in a
-- first pass (against an overlay of what earlier ops of the batch change) and
-- only then applied: a refused op leaves nothing of its batch behind.
local T, mode = KEYS[1], ARGV[1]
local NONE = 65535
local SL, WM, GK, OB = T .. ':slots', T .. ':w', T .. ':g', T .. ':ob'
local EINVAL, EOWNER, EFENCED, ETYPE, ETRIMMED, ECONFLICT = -101, -105, -106, -107, -108, -112
local REQ = {[1] = 's', [2] = 'i', [3] = 's', [5] = 'l', [6] = 'i', [7] = 'l', [8] = 's'}
local FLOW_WRITE = {[3] = true, [4] = true, [6] = true, [8] = true, [11] = true}

-- Integers as digits: tostring() is exact and cheap below 1e14, string.format
-- (slower) beyond, where tostring would switch to an exponent.
local function fmt(x)
  if x < 1e14 and x > -1e14 then return tostring(x) end
  return string.format('%d', x)
end

local function slotent(s)
  local v = redis.call('HGET', SL, s)
  if not v then return 0, NONE end
  local e, f = string.match(v, '^(%d+):(%d+)$')
  return tonumber(e), tonumber(f)
end

local function slotput(s, e, f) redis.call('HSET', SL, s, fmt(e) .. ':' .. fmt(f)) end

local function resolve(s)
  for _ = 1, 4097 do
    local _, f = slotent(s)
    if f == NONE then return s end
    s = f
  end
  return -1
end

local bucket_names = {}
local function bucket(clock)
  local b = math.floor(tonumber(clock) / 1024)
  local name = bucket_names[b]
  if not name then
    name = T .. ':o:' .. fmt(b)
    bucket_names[b] = name
  end
  return name
end

local function rec_get(clock, seq) return redis.call('HGET', bucket(clock), clock .. ':' .. seq) end

local function op(j)
  local b = 4 + j * 9
  return tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), ARGV[b + 3], ARGV[b + 4],
    tonumber(ARGV[b + 5]), ARGV[b + 6], ARGV[b + 7], ARGV[b + 8], ARGV[b + 9]
end

local function fail(code, clock, seq, msg)
  return {code, 'op (' .. clock .. ',' .. seq .. '): ' .. msg}
end

-- Reads the op records of every op with an id, one HMGET per bucket.
local function read_records(n, G)
  local recs, byb = {}, {}
  for j = 0, n - 1 do
    local b = 4 + j * 9
    if tonumber(ARGV[b + 2]) % 2 == 1 then
      local clock, seq = ARGV[b + 3], ARGV[b + 4]
      if tonumber(clock) < G then
        return nil, fail(ETRIMMED, clock, seq, 'below trim watermark ' .. fmt(G))
      end
      local bk = bucket(clock)
      local fl = byb[bk]
      if not fl then fl = {}; byb[bk] = fl end
      fl[#fl + 1] = clock .. ':' .. seq
    end
  end
  for bk, fl in pairs(byb) do
    for s = 1, #fl, 500 do
      local got = redis.call('HMGET', bk, unpack(fl, s, math.min(s + 499, #fl)))
      for i = 1, #got do recs[fl[s + i - 1]] = got[i] end
    end
  end
  return recs
end

-- Objects as stored, read once per batch: key -> {t, o, v} (t false: absent).
local function base_meta(base, key)
  local m = base[key]
  if m == nil then
    local v = redis.call('HMGET', T .. ':' .. key, 't', 'o', 'v', 'c')
    m = {t = v[1], o = v[2] and tonumber(v[2]), v = v[3], c = v[4] or '0'}
    base[key] = m
  end
  return m
end

-- Pass 1: the checks of every op against a simulation of the batch's own
-- effects on types and owners, without writing anything.
local function validate(n, slot, root, recs, base)
  local sim, seen = {}, {}
  for j = 0, n - 1 do
    local kind, flags, clock, seq, scope, key, _, _, arg = op(j)
    local emulated = false
    if flags % 2 == 1 then
      local rk = clock .. ':' .. seq
      local rkind = seen[rk]
      if not rkind and recs[rk] then rkind = tonumber(string.match(recs[rk], '^(%d+)|')) end
      if rkind then
        local want = kind == 9 and 10 or kind
        if rkind ~= want then
          return fail(ECONFLICT, clock, seq, 'was kind ' .. rkind .. ', now kind ' .. kind)
        end
        emulated = true
      elseif kind ~= 9 then
        seen[rk] = kind
      end
    end
    if not emulated and kind ~= 9 and kind ~= 10 then
      local m = sim[key] or base_meta(base, key)
      if scope == 1 then
        if root ~= slot then
          return fail(EOWNER, clock, seq, 'slot ' .. slot .. ' was transferred to slot ' .. root)
        end
        if m.t then
          local own = resolve(m.o)
          if own ~= slot then
            return fail(EOWNER, clock, seq,
              'per-flow object owned by slot ' .. own .. ', op from slot ' .. slot)
          end
        end
      end
      local req = REQ[kind]
      if req and m.t and m.t ~= req then
        return fail(ETYPE, clock, seq, "object is '" .. m.t .. "', op needs '" .. req .. "'")
      end
      local owner = m.t and m.o or (scope == 1 and slot or NONE)
      if (kind == 3 or kind == 5 or kind == 6) and not m.t then
        sim[key] = {t = req, o = owner}
      elseif kind == 8 and not m.t and math.floor(flags / 2) % 2 == 0 then
        sim[key] = {t = 's', o = owner}
      elseif kind == 4 then
        sim[key] = {t = false}
      elseif kind == 11 and m.t then
        sim[key] = {t = m.t, o = tonumber(arg)}
      end
    end
  end
  return nil
end

-- Pass 2: one op on the cached object m (kept current); returns found,
-- swapped, int, bytes. clk: the clock a write stamps on a per-flow object (the
-- field c, as store_kv.c's clock8), '0' when none.
local function apply(kind, flags, scope, key, a, b, arg, slot, m, clk)
  local dk, lk = T .. ':' .. key, T .. ':l' .. key
  if kind == 10 then return 1, 0, 0, a end
  local t, v = m.t, m.v
  local owner = t and m.o or (scope == 1 and slot or NONE)
  if clk ~= '0' and kind ~= 1 and kind ~= 2 and kind ~= 7 and (kind ~= 4 or t) then
    m.c = clk
  end
  if kind == 1 then
    if t then return 1, 0, 0, v end
  elseif kind == 2 then
    if t then return 1, 0, tonumber(v), '' end
  elseif kind == 3 then
    redis.call('HSET', dk, 't', 's', 'o', owner, 'v', a, 'c', clk)
    m.t, m.o, m.v = 's', owner, a
  elseif kind == 4 then
    if t then
      redis.call('DEL', dk, lk)
      m.t, m.o, m.v = false, nil, nil
      return 1, 0, 0, ''
    end
  elseif kind == 5 then
    if not t then redis.call('HSET', dk, 't', 'l', 'o', owner) end
    redis.call('RPUSH', lk, a)
    m.t, m.o = 'l', owner
  elseif kind == 6 then
    if not t then
      redis.call('HSET', dk, 't', 'i', 'o', owner, 'c', clk)
    elseif clk ~= '0' then
      redis.call('HSET', dk, 'c', clk)
    end
    local i = redis.call('HINCRBY', dk, 'v', arg)
    m.t, m.o, m.v = 'i', owner, i
    return t and 1 or 0, 0, i, ''
  elseif kind == 7 then
    local p = redis.call('LPOP', lk)
    if p then return 1, 0, 0, p end
  elseif kind == 8 then
    local match
    if math.floor(flags / 2) % 2 == 1 then match = (t and v == a) else match = not t end
    if match then
      redis.call('HSET', dk, 't', 's', 'o', owner, 'v', b, 'c', clk)
      m.t, m.o, m.v = 's', owner, b
      return 0, 1, 0, ''
    end
  elseif kind == 11 then
    if t then
      redis.call('HSET', dk, 'o', arg, 'c', clk)
      m.o = tonumber(arg)
      return 1, 0, 0, ''
    end
  end
  return 0, 0, 0, ''
end

-- Writes the new op records, one HSET per bucket, and indexes the buckets.
local function write_records(newb)
  for bk, kv in pairs(newb) do
    for s = 1, #kv, 1000 do
      redis.call('HSET', bk, unpack(kv, s, math.min(s + 999, #kv)))
    end
    redis.call('ZADD', OB, kv.num, bk)
  end
end

local function batch()
  local slot, epoch, wm = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  local e = slotent(slot)
  if e ~= epoch then
    return {EFENCED, 'slot ' .. slot .. ' now at epoch ' .. fmt(e) .. ', client at ' .. fmt(epoch)}
  end
  local root = resolve(slot)
  local G = tonumber(redis.call('GET', GK) or '0')
  local n = (#ARGV - 4) / 9
  local recs, err = read_records(n, G)
  if not recs then return err end
  local base = {}
  err = validate(n, slot, root, recs, base)
  if err then return err end
  local newb = {}
  local found, swapped, i, bytes, stamp, recorded = 0, 0, 0, '', '0', 0
  for j = 0, n - 1 do
    local kind, flags, clock, seq, scope, key, a, b, arg = op(j)
    found, swapped, i, bytes, stamp, recorded = 0, 0, 0, '', '0', 0
    local rk = flags % 2 == 1 and clock .. ':' .. seq
    local r = rk and recs[rk]
    if r then
      local _, f, s, ii, bl, p = string.match(r, '^(%d+)|(%d)|(%d)|(-?%d+)|(%d+)|()')
      found, swapped, i = tonumber(f), tonumber(s), tonumber(ii)
      bytes = string.sub(r, p, p + tonumber(bl) - 1)
      recorded = 1
      if kind == 9 then found = 1 end
    elseif kind ~= 9 then
      local m = kind ~= 10 and base_meta(base, key)
      local pre = ''
      local owned = scope == 1 or math.floor(flags / 4) % 2 == 1 -- store.c: owned
      if rk and owned and FLOW_WRITE[kind] then
        -- the object before the write, for reads as of an earlier clock
        pre = slot .. '|' .. (m.t or '-') .. '|' .. (m.t and m.o or NONE) .. '|' .. #key .. '|'
          .. key .. (m.t and m.t ~= 'l' and (type(m.v) == 'number' and fmt(m.v) or m.v) or '')
      end
      local clk = (rk and owned) and clock or '0'
      found, swapped, i, bytes = apply(kind, flags, scope, key, a, b, arg, slot, m, clk)
      stamp = (kind == 1 or kind == 2) and found == 1 and m.c or '0'
      -- a per-flow object found is the reader's own, and so is any object of a
      -- sole client's: no record (store_kv.c)
      if owned and (kind == 1 or kind == 2) and found == 1 then rk = false end
      if rk then
        local rec = kind .. '|' .. found .. '|' .. swapped .. '|' .. fmt(i) .. '|' .. #bytes .. '|'
          .. bytes .. pre
        recs[rk] = rec
        local bk = bucket(clock)
        local kv = newb[bk]
        if not kv then kv = {num = math.floor(tonumber(clock) / 1024)}; newb[bk] = kv end
        kv[#kv + 1] = rk
        kv[#kv + 1] = rec
      end
    end
  end
  write_records(newb)
  if wm > 0 then
    local old = tonumber(redis.call('HGET', WM, slot) or '0')
    if wm > old then redis.call('HSET', WM, slot, ARGV[4]) end
  end
  return {0, found, swapped, i, bytes, stamp, recorded}
end

local function claim()
  local s = tonumber(ARGV[2])
  local e, f = slotent(s)
  slotput(s, e + 1, f)
  return {0, e + 1}
end

local function transfer()
  local from, to = tonumber(ARGV[2]), tonumber(ARGV[3])
  local ef, ff = slotent(from)
  local et = slotent(to)
  local r = resolve(to)
  if ff ~= NONE then
    return {EINVAL, 'slot ' .. from .. ' was already transferred to ' .. ff}
  end
  if r ~= to and r ~= from then
    return {EINVAL, 'slot ' .. to .. ' was transferred to ' .. r}
  end
  if r == from then slotput(to, et, NONE) end
  slotput(from, ef + 1, to)
  return {0}
end

local function trim()
  local g = tonumber(ARGV[2])
  local old = tonumber(redis.call('GET', GK) or '0')
  if g <= old then return {0} end
  local gb = math.floor(g / 1024)
  local below = '(' .. fmt(gb)
  for _, bk in ipairs(redis.call('ZRANGEBYSCORE', OB, '-inf', below)) do redis.call('DEL', bk) end
  redis.call('ZREMRANGEBYSCORE', OB, '-inf', below)
  local pb = T .. ':o:' .. fmt(gb)
  for _, f in ipairs(redis.call('HKEYS', pb)) do
    if tonumber(string.match(f, '^(%d+):')) < g then redis.call('HDEL', pb, f) end
  end
  redis.call('SET', GK, ARGV[2])
  return {0}
end

-- The writes of slot ARGV[3] to per-flow objects from clock ARGV[2] on, with the
-- object before each: clock, seq, key, type ('-': absent), owner, value.
local function since()
  local w, slot = tonumber(ARGV[2]), ARGV[3]
  local out = {0}
  for _, bk in ipairs(redis.call('ZRANGEBYSCORE', OB, math.floor(w / 1024), '+inf')) do
    local h = redis.call('HGETALL', bk)
    for j = 1, #h, 2 do
      local clock, seq = string.match(h[j], '^(%d+):(%d+)$')
      local r = h[j + 1]
      if tonumber(clock) >= w then
        local bl, p = string.match(r, '^%d+|%d|%d|%-?%d+|(%d+)|()')
        local q = p + tonumber(bl)
        if q <= #r then
          local ws, pt, po, kl, kp = string.match(r, '^(%d+)|([-si])|(%d+)|(%d+)|()', q)
          if ws == slot then
            local ke = kp + tonumber(kl)
            out[#out + 1] = clock
            out[#out + 1] = seq
            out[#out + 1] = string.sub(r, kp, ke - 1)
            out[#out + 1] = pt
            out[#out + 1] = po
            out[#out + 1] = string.sub(r, ke)
          end
        end
      end
    end
  end
  return out
end

if mode == 'b' then return batch() end
if mode == 's' then return since() end
if mode == 'c' then return claim() end
if mode == 't' then return transfer() end
if mode == 'r' then return trim() end
return {EINVAL, 'unknown mode ' .. tostring(mode)}
