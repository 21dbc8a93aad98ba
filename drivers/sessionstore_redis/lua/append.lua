-- Append events to one session (append_events, the hot path): the version check, the
-- events (evlog.lua), the new head in one HSET and the session's updated_at index entries
-- (the order index and the composites), atomically. Kept apart from write.lua so a call carries and parses only what an append
-- needs (an append that creates the session or sets its expiry is write.lua's 'A').
--
-- KEYS: doc, events, types, keys. ARGV:
--   1 grace_ms, 2 index prefix ('' = the client maintains the indexes, as on Cluster),
--   3 id (these three are the same for every append to a session), 4 now_ms, 5 token,
--   6 expected version ('' none), 7 known token ('' none: the write token of the
--   document the client holds a copy of, see _cache.py),
--   8-12 what the client's copy says, used only if the document still is that copy
--   ('' in 8: not sent): 8 its version, 9 and 10 its event count and last seq, 11 the
--   events keys' PEXPIREAT ('' none), 12 the session's index record after the append
--   ('' none),
--   13 '1' when some event has a key (the reply then says which events were new),
--   14 the seq the client numbered the events after ('' none, see below), 15-17 the
--   version, event count and last seq its copy says the append leaves (with 14),
--   18... the events, five arguments each: the record's tail ('"t":..,"a":..,["k":..,]
--   "d":..}', see evlog.lua), type json, at ms, key json ('' none), content digest.
--   When 14 is given (no keys, the client's copy of the document at hand) each event is
--   four arguments instead: its seq, the whole record and type index entry numbered
--   from 14 + 1, and at ms; used as they are when 14 is the stored last seq, else
--   renumbered. When the copy is current the script then handles strings only (Lua
--   formats and parses numbers with printf/strtod: a third of an append's instructions).
-- Reply: the new version (an integer) when the stored write token is the known one, else
-- the document (one string, as read.lua); a table for {'DONE', doc} (a retried call
-- that had already been applied), {'!', code, id, a, b} (nothing was written) and, for a
-- call with keys, {'K', version or document, {per event: its new seq (an integer); or,
-- already stored with the same content, the stored record; or, a repeat of an earlier
-- event of the call, minus that event's seq}} (when nothing is new nothing is written
-- and the version is the unchanged one).
local doc, ev, et, ek = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local IX, ID, NOW, TOKEN, KNOWN, NV = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7], ARGV[8]
local KEYED, PRED = ARGV[13] == '1', tonumber(ARGV[14])
local FIRST, STEP = 18, PRED and 4 or 5  -- the first event, arguments per event
local RECORD = '^[^%z]*%z([^%z]*)%z([^%z]*)%z([^%z]*%z[^%z]*%z[^%z]*%z[^%z]*)%z[^%z]*(.*)$'

-- numbers as integers: tostring would print a version near 2^62 as 4.6116860184274e+18
local function str(x) if type(x) == 'number' then return string.format('%d', x) end return tostring(x or '') end
local function int(x) return string.format('%.0f', x) end
local function fail(code, a, b) return {'!', code, ID, str(a), str(b)} end
local w = redis.call('HMGET', doc, 'wt', 'am', 'v', 'tu', 'ti')
local ver, ec, ls, expire_at, current
if NV ~= '' and w[1] == KNOWN and w[3] == '2' then
  -- The document is the client's copy (the write token says so): the version check and
  -- the expiry check were done from it, nothing else to read. (The client sends these
  -- only when its copy has the expected version and has not expired.)
  ver, current, ec, ls = NV, true, ARGV[9], ARGV[10]  -- strings, see below
  if ARGV[11] ~= '' then expire_at = ARGV[11] end
else
  local h = redis.call('HMGET', doc, 'ver', 'ea', 'wt', 'grp', 'v', 'ec', 'ls')
  if not h[1] then
    if h[4] then return fail('PTR', h[4]) end
    if redis.call('EXISTS', doc) == 1 then return fail('CORRUPT') end
    return fail('NOTFOUND')
  end
  local format = tonumber(h[5])
  ver = tonumber(h[1])
  if not ver or not format then return fail('CORRUPT') end
  if format > 2 then return fail('FORMAT') end
  local expect = tonumber(ARGV[6])
  if expect and ver == expect + 1 and h[3] == TOKEN then
    return {'DONE', table.concat(redis.call('HGETALL', doc), '\0')}
  end
  if h[2] and tonumber(h[2]) <= tonumber(NOW) then return fail('NOTFOUND') end
  if expect and ver ~= expect then return fail('CONFLICT', expect, ver) end
  if format < 2 then
    if not ev_upgrade(doc, ev, et) then return fail('CORRUPT') end
    w = redis.call('HMGET', doc, 'wt', 'am', 'v', 'tu', 'ti')
    h[6] = redis.call('HGET', doc, 'ec')
  end
  current = KNOWN ~= '' and h[3] == KNOWN
  ec, ls = tonumber(h[6]) or 0, tonumber(h[7]) or 0
  if h[2] then expire_at = int(tonumber(h[2]) + tonumber(ARGV[1])) end
end

local TI = w[5] == '1'  -- the type index is kept (evlog.lua)
-- keyed events: one already stored with the same content is not written again; with
-- other content the call fails before anything is written
local flags, new = {}, 0
if KEYED then
  local bad
  flags, new, bad = ev_dedupe(ev, ek, ARGV, FIRST, STEP, 3)
  if bad then return fail('EVKEY', bad) end
  if new == 0 then  -- every event is stored already: nothing to write
    if current then return {'K', tonumber(ver), ev_flags_out(flags)} end
    return {'K', table.concat(redis.call('HGETALL', doc), '\0'), ev_flags_out(flags)}
  end
else
  new = (#ARGV - FIRST + 1) / STEP
end

local nv
if current and PRED then
  -- numbered from the copy, which is the document: strings only (no number is formatted
  -- or parsed; two `at` of the same number of digits compare as strings)
  local am, tu = w[2], w[4] == '1'
  local function gt(x, y)
    if #x ~= #y or string.byte(x) == 45 or string.byte(y) == 45 then
      return tonumber(x) > tonumber(y)
    end
    return x > y
  end
  for i = FIRST, #ARGV, 4 do
    redis.call('ZADD', ev, ARGV[i], ARGV[i + 1])
    if TI then redis.call('ZADD', et, '0', ARGV[i + 2]) end
    local at = ARGV[i + 3]
    if not am or gt(at, am) then am = at elseif gt(am, at) then tu = true end
  end
  nv = ARGV[15]
  if tu and w[4] ~= '1' then
    redis.call('HSET', doc, 'ver', nv, 'ec', ARGV[16], 'ls', ARGV[17], 'ua', NOW, 'wt', TOKEN, 'am', am, 'tu', '1')
  else
    redis.call('HSET', doc, 'ver', nv, 'ec', ARGV[16], 'ls', ARGV[17], 'ua', NOW, 'wt', TOKEN, 'am', am)
  end
else
  ver, ec, ls = tonumber(ver), tonumber(ec), tonumber(ls)
  local am, tu = tonumber(w[2]), w[4] == '1'
  local seq, j = ls, 0
  for i = FIRST, #ARGV, STEP do
    j = j + 1
    if not KEYED or flags[j] == true then
      seq = seq + 1
      local at
      if PRED == ls then  -- numbered by the client, rightly
        redis.call('ZADD', ev, ARGV[i], ARGV[i + 1])
        if TI then redis.call('ZADD', et, '0', ARGV[i + 2]) end
        at = ARGV[i + 3]
      elseif PRED then  -- numbered by the client from another seq: renumber
        local tail = string.match(ARGV[i + 1], '^{"v":2,"s":%d+,(.*)$')
        ev_add(ev, et, ek, seq, tail, string.sub(ARGV[i + 2], 1, -18), '', '', TI)
        at = ARGV[i + 3]
      else
        ev_add(ev, et, ek, seq, ARGV[i], ARGV[i + 1], ARGV[i + 3], ARGV[i + 4], TI)
        at = ARGV[i + 2]
      end
      if KEYED then flags[j] = seq end
      at = tonumber(at)
      if am and at < am then tu = true end
      if not am or at > am then am = at end
    end
  end
  nv = int(ver + 1)
  if tu and w[4] ~= '1' then
    redis.call('HSET', doc, 'ver', nv, 'ec', int(ec + new), 'ls', int(seq), 'ua', NOW, 'wt', TOKEN, 'am', int(am), 'tu', '1')
  else
    redis.call('HSET', doc, 'ver', nv, 'ec', int(ec + new), 'ls', int(seq), 'ua', NOW, 'wt', TOKEN, 'am', int(am))
  end
end
-- after the writes: PEXPIREAT of a key that does not exist yet (a first append) is a no-op
if expire_at then
  redis.call('PEXPIREAT', ev, expire_at)
  redis.call('PEXPIREAT', et, expire_at)
  if KEYED then redis.call('PEXPIREAT', ek, expire_at) end
end

if IX ~= '' then
  local full = false  -- not indexed yet (an index entry lost or removed): index in full
  if current and ARGV[12] ~= '' then
    -- the client made the record from its copy, which is this document: no read. A record
    -- that was not there (HSET added a field) means the session was not indexed.
    if redis.call('HSET', IX .. 'r', ID, ARGV[12]) == 1 then
      full = true
    else
      redis.call('ZADD', IX .. 'u', NOW, ID)
      ix_touch(IX, ID, NOW, ARGV[12])
    end
  else
    local old = redis.call('HGET', IX .. 'r', ID)
    local ca, ua, mid, tags
    if old then  -- ver, ca, ua, then ea..grp kept, ev, then the tags (one match, no split)
      ca, ua, mid, tags = string.match(old, RECORD)
    end
    if ca then  -- only the version, updated_at and "has events" change
      if ua ~= NOW then
        redis.call('ZADD', IX .. 'u', NOW, ID)
        ix_touch(IX, ID, NOW, old)
      end
      redis.call('HSET', IX .. 'r', ID, nv .. SEP .. ca .. SEP .. NOW .. SEP .. mid .. SEP .. '1' .. tags)
    else  -- missing or malformed
      full = true
    end
  end
  if full then
    local f = redis.call('HMGET', doc, 'ca', 'ea', 'st', 'pid', 'grp')
    local r = {nv, f[1], NOW, f[2] or '', f[3], f[4] or '', f[5] or '', '1'}
    for _, k in ipairs(redis.call('HKEYS', doc)) do
      if string.sub(k, 1, 2) == 't:' then r[#r + 1] = string.sub(k, 3) end
    end
    ix_add(IX, ID, r)
  end
end
local out
if current then out = tonumber(nv) else out = table.concat(redis.call('HGETALL', doc), '\0') end
if KEYED then return {'K', out, ev_flags_out(flags)} end
return out
