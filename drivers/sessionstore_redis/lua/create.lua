-- Create one session without a group (create_session, the common case): write.lua's 'C'
-- for one session, kept apart so that a call carries and parses only what a create needs
-- (as append.lua for appends). The client sends the whole document string (doc.lua); the
-- script checks the id, stores it with one SET and indexes the session (single server),
-- atomically (no string is built here: Redis's Lua hashes every byte of a new string).
-- Loaded after ixcomp.lua and ixadd.lua, before dochead.lua, doc.lua, create_check.lua
-- (inside the `else` below: a local function costs every call that defines it, ~0.5k
-- instructions), index.lua and create_reindex.lua.
--
-- KEYS: doc, events, checkpoints, event types, event keys.
-- ARGV: 1 now_ms, 2 token, 3 index prefix ('' = the client maintains the indexes, as on
--   Cluster), 4 id, 5 status, 6 the document string, 7 the keys' PEXPIREAT (expires_at +
--   grace; '' none), 8 expires_at ('' none), 9 the processor ('' none), 10... the tags.
-- Reply: 1 | {'DONE', doc} (a retried call that had already been applied) |
-- {'!', code, id, a, b} (nothing was written).
local doc, NOW, TOKEN, IX, ID, ST = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local EXP = ARGV[7]

-- the document, and the index entries; true when the id still had index entries (an
-- expired session's, replaced: create_reindex.lua moves them, after index.lua)
local record, old = nil, false  -- the index record; the one stored (index.lua's ix_set)
local function write_new()
  redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  if EXP ~= '' then
    redis.call('SET', doc, ARGV[6], 'PXAT', EXP)
  else
    redis.call('SET', doc, ARGV[6])
  end
  if IX ~= '' then
    record = {'1', NOW, NOW, ARGV[8], ST, ARGV[9], '', '0'}
    for j = 10, #ARGV do record[#record + 1] = ARGV[j] end
    -- the record first, if the id has none (one call, not HGET + HSET): its other entries
    -- then; else the record stored is read and the entries moved (below)
    if redis.call('HSETNX', IX .. 'r', ID, table.concat(record, SEP)) == 1 then
      ix_add_entries(IX, ID, record)
    else
      old = redis.call('HGET', IX .. 'r', ID)
    end
  end
  return old
end

-- nothing holds the id (the common case): no document helper is defined (dochead.lua,
-- doc.lua, create_check.lua)
if not redis.pcall('GET', doc) then
  if not write_new() then return 1 end
  -- the id had index entries: create_reindex.lua moves them
else
