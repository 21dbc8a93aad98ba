-- The event log of a session (layout 2, see docs/redis.md), shared by the scripts that
-- read or write events. Three keys per session:
--   ev  zset   score = seq, member = the event record '{"v":2,"s":<seq>,"t":<type json>,
--              "a":<at ms>[,"k":<key json>],"d":<data json>}' (a record names its seq, so
--              members are unique; the scripts never decode the JSON: they read seq, type,
--              at and key with one anchored match, see ev_parse)
--   et  zset   the type index: score 0, member '<type json>\0<seq as 16 hex digits>', so
--              the events of one type in seq order are one lexicographic range. Built
--              by the first read with types= (ev_types), kept from then on: the
--              document's 'ti' = '1' says it is (a session never read by type pays
--              nothing for it)
--   ek  hash   the key index: key json -> '<seq>\0<content digest>' (keyed events only)
-- and two fields of the document: 'am' the greatest `at` appended so far, 'tu' = '1' once
-- an event was appended with an `at` below it (then `at` is not sorted by seq and a time
-- bound cannot be turned into a seq bound by binary search).
-- Layout 1 (before issue #17, document field v = '1') kept the events in a list whose
-- positions were the seqs; ev_upgrade converts it in place on first use.
local function ev_hex(seq) return string.format('%016x', seq) end

-- Store one event: its record, its type index entry (ti: the index is kept) and (keyed)
-- its key index entry.
local function ev_add(ev, et, ek, seq, tail, ty, key, dig, ti)
  local s = string.format('%d', seq)
  redis.call('ZADD', ev, s, '{"v":2,"s":' .. s .. ',' .. tail)
  if ti then redis.call('ZADD', et, '0', ty .. '\0' .. ev_hex(seq)) end
  if key ~= '' then redis.call('HSET', ek, key, s .. '\0' .. dig) end
end

-- Convert a layout-1 log (a list, seq = first seq + position) to layout 2, keeping the
-- keys' expiry. Returns false (nothing changed) when a record is not a layout-1 record.
local function ev_upgrade(doc, ev, et)
  local h = d_hmget(doc, 'ec', 'ls')
  local ec, ls = tonumber(h[1]) or 0, tonumber(h[2]) or 0
  local am, tu = nil, false
  if redis.call('TYPE', ev)['ok'] == 'list' then
    local items = redis.call('LRANGE', ev, 0, -1)
    local first = ls - #items + 1
    local recs = {}
    for i, b in ipairs(items) do
      local t, a, rest = string.match(b, '^{"v":1,"type":(".-"),"at":(%-?%d+),"data":(.*)$')
      if not t then return false end
      local s = string.format('%d', first + i - 1)
      recs[#recs + 1] = s
      recs[#recs + 1] = '{"v":2,"s":' .. s .. ',"t":' .. t .. ',"a":' .. a .. ',"d":' .. rest
      local n = tonumber(a)
      if am and n < am then tu = true end
      if not am or n > am then am = n end
    end
    local ttl = redis.call('PTTL', ev)
    redis.call('DEL', ev)
    for i = 1, #recs, 1000 do redis.call('ZADD', ev, unpack(recs, i, math.min(i + 999, #recs))) end
    if ttl > 0 and #recs > 0 then redis.call('PEXPIRE', ev, ttl) end
    ec = #items
  end
  redis.call('DEL', et)  -- the type index is built on the first read by type
  d_hdel(doc, 'ti')
  local f = {'v', '2', 'ec', string.format('%d', ec)}
  if am then f[#f + 1] = 'am'; f[#f + 1] = string.format('%d', am) end
  if tu then f[#f + 1] = 'tu'; f[#f + 1] = '1' end
  d_hsetl(doc, f)
  return true
end

-- The keyed events of an append: an event whose key is stored with the same content
-- (digest) is not written again. evs holds n events of `step` values from index i0, the
-- key at offset ko and the digest at ko + 1. Returns flags (per event: true = new, the
-- stored record, or {j} = a repeat of event j of this call), the number of new events,
-- and the key of a conflict (other content; nothing may then be written). ek nil: no key
-- is stored (a session being created).
local function ev_dedupe(ev, ek, evs, i0, step, ko)
  local flags, new, seen = {}, 0, {}
  for i = i0, #evs, step do
    local key, dig, f = evs[i + ko], evs[i + ko + 1], true
    if key ~= '' then
      local had = seen[key]
      if had then
        if had[1] ~= dig then return nil, 0, key end
        f = had[2]
        if f == true then f = {had[3]} end
      else
        local stored = ek and redis.call('HGET', ek, key)
        if stored then
          local s, d = string.match(stored, '^(%d+)%z(.*)$')
          if d ~= dig then return nil, 0, key end
          f = redis.call('ZRANGEBYSCORE', ev, s, s)[1] or ''
        end
        seen[key] = {dig, f, #flags + 1}
      end
    end
    flags[#flags + 1] = f
    if f == true then new = new + 1 end
  end
  return flags, new, nil
end

-- After the new events got their seqs (flags[j] = seq): repeats point at their seq (< 0).
local function ev_flags_out(flags)
  for i, f in ipairs(flags) do
    if type(f) == 'table' then flags[i] = -flags[f[1]] end
  end
  return flags
end
