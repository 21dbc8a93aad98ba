-- Removing events from a log (layout in evlog.lua, loaded before this file): reading a
-- record's seq, type, at and key without decoding its JSON, and the index entries and
-- document fields that go with a removed record. Apart from evlog.lua so that
-- append.lua, which never removes, does not define these on every call.
local EVREC = '^{"v":2,"s":(%d+),"t":(".-"),"a":(%-?%d+),(.*)$'

-- seq (a number), type json, at (a string), key json or nil, of one record
local function ev_parse(rec)
  local s, t, a, rest = string.match(rec, EVREC)
  if not s then return nil end
  local k = nil
  if string.sub(rest, 1, 4) == '"k":' then k = string.match(rest, '^"k":(".-"),"d":') end
  return tonumber(s), t, a, k
end

-- Remove the index entries of records about to be removed from ev (the caller removes
-- the records themselves, usually with one range command). false if a record is malformed.
local function ev_unindex(et, ek, recs, step)
  local tys, keys = {}, {}
  for i = 1, #recs, step do
    local seq, ty, _, key = ev_parse(recs[i])
    if not seq then return false end
    tys[#tys + 1] = ty .. '\0' .. ev_hex(seq)
    if key then keys[#keys + 1] = key end
  end
  for i = 1, #tys, 1000 do redis.call('ZREM', et, unpack(tys, i, math.min(i + 999, #tys))) end
  for i = 1, #keys, 1000 do redis.call('HDEL', ek, unpack(keys, i, math.min(i + 999, #keys))) end
  return true
end

-- Build the type index of a log that has none (doc field 'ti' unset), keeping the log's
-- expiry: the first read by type pays O(events) once, later appends keep the index.
-- false if a record is malformed (nothing is then written).
local function ev_types(doc, ev, et)
  local recs = redis.call('ZRANGE', ev, 0, -1)
  local tys = {}
  for _, rec in ipairs(recs) do
    local seq, ty = ev_parse(rec)
    if not seq then return false end
    tys[#tys + 1] = '0'
    tys[#tys + 1] = ty .. '\0' .. ev_hex(seq)
  end
  redis.call('DEL', et)
  for i = 1, #tys, 1000 do redis.call('ZADD', et, unpack(tys, i, math.min(i + 999, #tys))) end
  local ttl = redis.call('PTTL', ev)
  if ttl > 0 and #tys > 0 then redis.call('PEXPIRE', et, ttl) end
  d_hset(doc, 'ti', '1')
  return true
end

-- After events were removed: the greatest `at` is the last record's while `at` is sorted
-- (else it stays, which only keeps the log marked unsorted); an empty log is sorted.
local function ev_settle(doc, ev)
  local lastrec = redis.call('ZRANGE', ev, -1, -1)[1]
  if not lastrec then
    d_hdel(doc, 'am', 'tu')
  elseif d_hget(doc, 'tu') ~= '1' then
    local _, _, a = ev_parse(lastrec)
    if a then d_hset(doc, 'am', a) end
  end
end

