-- Create one session without a group (create_session, the common case): write.lua's 'C'
-- for one session, kept apart so that a call carries and parses only what a create needs
-- (as append.lua for appends). The client sends the document's fields ready for HSET;
-- the script checks the id, writes them with the header in one HSET and indexes the
-- session (single server), atomically. Loaded after ixcomp.lua and ixadd.lua, before
-- index.lua and create_reindex.lua.
--
-- KEYS: doc, events, checkpoints, event types, event keys.
-- ARGV: 1 now_ms, 2 token, 3 index prefix ('' = the client maintains the indexes, as on
--   Cluster), 4 id, 5 status, 6 and 7 the encoded sizes of data and metadata (write.lua's
--   psize), 8 the keys' PEXPIREAT (expires_at + grace; '' none), 9 the number of tags,
--   10... the fields after the header, in pairs: 'ea' and expires_at (when 8 is given),
--   'pid' and the processor (when there is one), 't:<tag>' and '' per tag, then
--   'd:<json key>' / 'm:<json key>' and the value's JSON.
-- Reply: 1 | {'DONE', doc} (a retried call that had already been applied) |
-- {'!', code, id, a, b} (nothing was written).
local doc, NOW, TOKEN, IX, ID, ST = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local EXP, NT = ARGV[8], tonumber(ARGV[9])

local h = redis.call('HMGET', doc, 'ver', 'ea', 'wt', 'grp', 'v')
if h[1] then
  local v = tonumber(h[5])
  if not tonumber(h[1]) or not v then return {'!', 'CORRUPT', ID, '', ''} end
  if v > 2 then return {'!', 'FORMAT', ID, '', ''} end
  if (not h[2]) or tonumber(h[2]) > tonumber(NOW) then  -- live
    if h[3] == TOKEN then return {'DONE', table.concat(redis.call('HGETALL', doc), '\0')} end
    return {'!', 'EXISTS', ID, '', ''}
  end
elseif h[4] then
  return {'!', 'PTR', ID, h[4], ''}
elseif redis.call('EXISTS', doc) == 1 then
  return {'!', 'CORRUPT', ID, '', ''}
end

redis.call('DEL', doc, KEYS[2], KEYS[3], KEYS[4], KEYS[5])
local last = math.min(#ARGV, 1009)  -- HSET in chunks of 1,000 values (Lua's C stack)
redis.call('HSET', doc, 'v', '2', 'id', ID, 'ver', '1', 'ca', NOW, 'ua', NOW, 'ec', '0',
  'ls', '0', 'st', ST, 'wt', TOKEN, 'ds', ARGV[6], 'ms', ARGV[7], unpack(ARGV, 10, last))
for i = last + 1, #ARGV, 1000 do
  redis.call('HSET', doc, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if EXP ~= '' then redis.call('PEXPIREAT', doc, EXP) end

local record, old = nil, false  -- the index record; the one stored (index.lua's ix_set)
if IX ~= '' then
  local i, ea, pid = 10, '', ''
  if EXP ~= '' then ea, i = ARGV[11], 12 end
  if ARGV[i] == 'pid' then pid, i = ARGV[i + 1], i + 2 end
  record = {'1', NOW, NOW, ea, ST, pid, '', '0'}
  for j = i, i + 2 * NT - 2, 2 do record[#record + 1] = string.sub(ARGV[j], 3) end
  -- the record first, if the id has none (one call, not HGET + HSET): its other entries
  -- then; else the record stored is read and the entries moved (below)
  if redis.call('HSETNX', IX .. 'r', ID, table.concat(record, SEP)) == 1 then
    ix_add_entries(IX, ID, record)
  else
    old = redis.call('HGET', IX .. 'r', ID)
  end
end
if not old then return 1 end
-- the id had index entries (an expired session's, replaced): create_reindex.lua moves
-- them, after index.lua (not defined on the common path)
