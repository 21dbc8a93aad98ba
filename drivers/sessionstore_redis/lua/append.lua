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
local doc, ev = KEYS[1], KEYS[2]
local IX, ID, NOW, TOKEN, KNOWN, NV = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7], ARGV[8]
local FIRST = 13  -- the first event
local RECORD = '^[^%z]*%z([^%z]*)%z([^%z]*)%z([^%z]*%z[^%z]*%z[^%z]*%z[^%z]*)%z[^%z]*(.*)$'

local nv, current
if NV ~= '' and redis.call('HGET', doc, 'wt') == KNOWN then
  -- The document is the client's copy (the write token says so): the version check, the
  -- expiry check and the new head were done from it, nothing else to read. (The client
  -- sends these only when its copy has the expected version and has not expired.)
  nv, current = NV, true
  redis.call('HSET', doc, 'ver', NV, 'ec', ARGV[9], 'ls', ARGV[10], 'ua', NOW, 'wt', TOKEN)
  if ARGV[11] ~= '' then redis.call('PEXPIREAT', ev, ARGV[11]) end
else
  local function fail(code, a, b) return {'!', code, ID, tostring(a or ''), tostring(b or '')} end
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
  local n = #ARGV - FIRST + 1
  nv, current = int(ver + 1), KNOWN ~= '' and h[3] == KNOWN
  redis.call('HSET', doc, 'ver', nv, 'ec', int((tonumber(h[6]) or 0) + n),
             'ls', int((tonumber(h[7]) or 0) + n), 'ua', NOW, 'wt', TOKEN)
  if h[2] then redis.call('PEXPIREAT', ev, int(tonumber(h[2]) + tonumber(ARGV[1]))) end
end
for i = FIRST, #ARGV, 1000 do redis.call('RPUSH', ev, unpack(ARGV, i, math.min(i + 999, #ARGV))) end

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
