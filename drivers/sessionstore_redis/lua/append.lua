-- Append events to one session (append_events, the hot path): the version check, one
-- RPUSH, the new head in one HSET and the session's updated_at index entry, atomically.
-- Kept apart from write.lua so a call carries and parses only what an append needs.
--
-- KEYS: doc, events. ARGV: now_ms, grace_ms, token, index prefix ('' = the client
-- maintains the indexes, as on Cluster), id, expected version ('' none), known token
-- ('' none: the write token of the document the client holds a copy of, see _cache.py),
-- then the events (JSON bytes).
-- Reply: the new version (an integer) when the stored write token is the known one, else
-- the document (one string, as read.lua); a table only for {'DONE', doc} (a retried call
-- that had already been applied) and {'!', code, id, a, b} (nothing was written), as
-- write.lua. The bare replies save the client parsing an array on the hot path.
local doc, ev = KEYS[1], KEYS[2]
local NOW, TOKEN, IX, ID, KNOWN = ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[7]
local function fail(code, a, b) return {'!', code, ID, tostring(a or ''), tostring(b or '')} end
local function int(x) return string.format('%.0f', x) end
local RECORD = '^[^%z]*%z([^%z]*)%z([^%z]*)%z([^%z]*%z[^%z]*%z[^%z]*%z[^%z]*)%z[^%z]*(.*)$'

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

local n, nv = #ARGV - 7, int(ver + 1)
for i = 8, #ARGV, 1000 do redis.call('RPUSH', ev, unpack(ARGV, i, math.min(i + 999, #ARGV))) end
redis.call('HSET', doc, 'ver', nv, 'ec', int((tonumber(h[6]) or 0) + n),
           'ls', int((tonumber(h[7]) or 0) + n), 'ua', NOW, 'wt', TOKEN)
if h[2] then redis.call('PEXPIREAT', ev, int(tonumber(h[2]) + tonumber(ARGV[2]))) end
if IX ~= '' then
  local old = redis.call('HGET', IX .. 'r', ID)
  local ca, ua, mid, tags
  if old then  -- ver, ca, ua, then ea..grp kept, ev, then the tags (one match, no split)
    ca, ua, mid, tags = string.match(old, RECORD)
  end
  if ca then  -- only the version, updated_at and "has events" change
    if ua ~= NOW then redis.call('ZADD', IX .. 'u', NOW, ID) end
    redis.call('HSET', IX .. 'r', ID, nv .. SEP .. ca .. SEP .. NOW .. SEP .. mid .. SEP .. '1' .. tags)
  else  -- not indexed yet (an index entry lost or removed) or malformed: index it in full
    local f = redis.call('HMGET', doc, 'ca', 'ea', 'st', 'pid', 'grp')
    local r = {nv, f[1], NOW, f[2] or '', f[3], f[4] or '', f[5] or '', '1'}
    for _, k in ipairs(redis.call('HKEYS', doc)) do
      if string.sub(k, 1, 2) == 't:' then r[#r + 1] = string.sub(k, 3) end
    end
    ix_add(IX, ID, r)
  end
end
if KNOWN ~= '' and h[3] == KNOWN then return ver + 1 end
return table.concat(redis.call('HGETALL', doc), '\0')
