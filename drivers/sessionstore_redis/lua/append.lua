-- Append events to one session (append_events, the hot path): the version check, one
-- RPUSH, the new head in one HSET and the session's updated_at index entry, atomically.
-- Kept apart from write.lua so a call carries and parses only what an append needs.
--
-- KEYS: doc, events. ARGV:
--   1 grace_ms, 2 index prefix ('' = the client maintains the indexes, as on Cluster),
--   3 id (these three are the same for every append to a session), 4 now_ms, 5 token,
--   6 expected version ('' none), 7 known token ('' none: the write token of the
--   document the client holds a copy of, see _cache.py),
--   8-12 what the client's copy says the append leaves, used only if the document still
--   is that copy ('' in 8: not sent): 8 the new version, 9 and 10 the new event count
--   and last seq, 11 the events key's PEXPIREAT ('' none), 12 the session's index record
--   ('' none),
--   13... the events (JSON bytes).
-- Reply: the new version (an integer) when the stored write token is the known one, else
-- the document (one string, as read.lua); a table only for {'DONE', doc} (a retried call
-- that had already been applied) and {'!', code, id, a, b} (nothing was written), as
-- write.lua. The bare replies save the client parsing an array on the hot path.
-- The events are pushed before the head is written, and RPUSH's reply (the list's new
-- length) must be the new event count: an event's sequence number is its position, so a
-- list holding more or fewer items than the document counts (an item pushed by hand, a
-- lost list) would give the new events the wrong numbers. Then the push is undone and the
-- reply is {'!', 'EVLEN', id, list length, event count}: nothing was written.
local doc, ev = KEYS[1], KEYS[2]
local IX, ID, NOW, TOKEN, KNOWN, NV = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7], ARGV[8]
local FIRST = 13  -- the first event
local RECORD = '^[^%z]*%z([^%z]*)%z([^%z]*)%z([^%z]*%z[^%z]*%z[^%z]*%z[^%z]*)%z[^%z]*(.*)$'

-- numbers as integers: tostring would print a version near 2^62 as 4.6116860184274e+18
local function str(x) if type(x) == 'number' then return string.format('%d', x) end return tostring(x or '') end
local function fail(code, a, b) return {'!', code, ID, str(a), str(b)} end
local n = #ARGV - FIRST + 1
local nv, current, ec, ls, expire_at
if NV ~= '' and redis.call('HGET', doc, 'wt') == KNOWN then
  -- The document is the client's copy (the write token says so): the version check, the
  -- expiry check and the new head were done from it, nothing else to read. (The client
  -- sends these only when its copy has the expected version and has not expired.)
  nv, current, ec, ls = NV, true, ARGV[9], ARGV[10]
  if ARGV[11] ~= '' then expire_at = ARGV[11] end
else
  local function int(x) return string.format('%.0f', x) end
  local h = redis.call('HMGET', doc, 'ver', 'ea', 'wt', 'grp', 'v', 'ec', 'ls')
  if not h[1] then
    if h[4] then return fail('PTR', h[4]) end
    if redis.call('EXISTS', doc) == 1 then return fail('CORRUPT') end
    return fail('NOTFOUND')
  end
  local ver, format = tonumber(h[1]), tonumber(h[5])
  if not ver or not format then return fail('CORRUPT') end
  if format > 1 then return fail('FORMAT') end
  local expect = tonumber(ARGV[6])
  if expect and ver == expect + 1 and h[3] == TOKEN then
    return {'DONE', table.concat(redis.call('HGETALL', doc), '\0')}
  end
  if h[2] and tonumber(h[2]) <= tonumber(NOW) then return fail('NOTFOUND') end
  if expect and ver ~= expect then return fail('CONFLICT', expect, ver) end
  nv, current = int(ver + 1), KNOWN ~= '' and h[3] == KNOWN
  ec, ls = int((tonumber(h[6]) or 0) + n), int((tonumber(h[7]) or 0) + n)
  if h[2] then expire_at = int(tonumber(h[2]) + tonumber(ARGV[1])) end
end
local len = 0
for i = FIRST, #ARGV, 1000 do len = redis.call('RPUSH', ev, unpack(ARGV, i, math.min(i + 999, #ARGV))) end
if n == 0 then len = redis.call('LLEN', ev) end
if len ~= tonumber(ec) then
  if n > 0 then redis.call('LTRIM', ev, 0, -(n + 1)) end  -- undo the push
  return fail('EVLEN', len - n, tonumber(ec) - n)
end
redis.call('HSET', doc, 'ver', nv, 'ec', ec, 'ls', ls, 'ua', NOW, 'wt', TOKEN)
-- after the push: PEXPIREAT of a list that does not exist yet (a first append) is a no-op
if expire_at then redis.call('PEXPIREAT', ev, expire_at) end

if IX ~= '' then
  local full = false  -- not indexed yet (an index entry lost or removed): index in full
  if current and ARGV[12] ~= '' then
    -- the client made the record from its copy, which is this document: no read. A record
    -- that was not there (HSET added a field) means the session was not indexed.
    if redis.call('HSET', IX .. 'r', ID, ARGV[12]) == 1 then
      full = true
    else
      redis.call('ZADD', IX .. 'u', NOW, ID)
    end
  else
    local old = redis.call('HGET', IX .. 'r', ID)
    local ca, ua, mid, tags
    if old then  -- ver, ca, ua, then ea..grp kept, ev, then the tags (one match, no split)
      ca, ua, mid, tags = string.match(old, RECORD)
    end
    if ca then  -- only the version, updated_at and "has events" change
      if ua ~= NOW then redis.call('ZADD', IX .. 'u', NOW, ID) end
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
if current then return tonumber(nv) end
return table.concat(redis.call('HGETALL', doc), '\0')
