-- Create one session without a group (create_session, the common case): write.lua's 'C'
-- for one session, kept apart so that a call carries and parses only what a create needs
-- (as append.lua for appends). The client sends the whole document string (doc.lua); the
-- script checks the id, stores it with one SET and indexes the session (single server),
-- atomically (no string is built here: Redis's Lua hashes every byte of a new string).
-- The common case (nothing holds the id, the id has no index record; composite indexes
-- kept or not) runs here, first, and returns before any helper is defined: a local
-- function costs every call that defines it. Loaded before ixcomp.lua, ixadd.lua,
-- create_rest.lua (the `if` of the rest), dochead.lua, doc.lua, create_check.lua (inside
-- that `if`), index.lua and create_reindex.lua.
--
-- KEYS: doc, events, checkpoints, event types, event keys; or the doc alone for an id the
--   client has just generated (a new ULID: no key of it can exist, so the fast path has
--   no other key to clear; should the slow path run, create_rest.lua names the others
--   from the doc's, which share its hash tag).
-- ARGV: 1 now_ms, 2 token, 3 index prefix ('' = the client maintains the indexes, as on
--   Cluster), 4 id, 5 status, 6 the document string, 7 the keys' PEXPIREAT (expires_at +
--   grace; '' none), 8 expires_at ('' none), 9 the processor ('' none), 10... the tags.
-- Reply: 1 | {'DONE', doc} (a retried call that had already been applied) |
-- {'!', code, id, a, b} (nothing was written).
local doc, NOW, TOKEN, IX, ID, ST = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local EXP, EA, PID = ARGV[7], ARGV[8], ARGV[9]

-- the index record (a table in record order, index.lua) and the one the id still had (an
-- expired session's, replaced: create_reindex.lua moves its entries), for the rarer paths
local record, old = nil, false
-- the document, if nothing holds the id (SET NX: one call, not GET + SET; a key of any
-- type, a layout-2 document's hash too, holds it), then the index entries (ixadd.lua's
-- ix_add_entries, written out: see create_rest.lua's write_new for the other case)
local free
if EXP ~= '' then
  free = redis.call('SET', doc, ARGV[6], 'NX', 'PXAT', EXP)
else
  free = redis.call('SET', doc, ARGV[6], 'NX')
end
if free then
  if KEYS[2] then redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) end
  if IX == '' then return 1 end
  -- the record (index.lua's layout) made by one concatenation, not a table and its
  -- table.concat; the table only on the rarer paths, below
  local rec = '1\0' .. NOW .. '\0' .. NOW .. '\0' .. EA .. '\0' .. ST .. '\0' .. PID .. '\0\0' .. '0'
  if ARGV[10] then rec = rec .. '\0' .. table.concat(ARGV, '\0', 10) end
  local call = redis.call
  -- the record first, if the id has none (one call, not HGET + HSET): its other entries
  -- then; else the record stored is read and the entries moved (create_reindex.lua)
  if call('HSETNX', IX .. 'r', ID, rec) == 1 then
    call('ZADD', IX .. 'c', NOW, ID)
    call('ZADD', IX .. 'u', NOW, ID)
    if EA == '' then call('ZADD', IX .. 'n', '0', ID) else call('ZADD', IX .. 'x', EA, ID) end
    call('ZADD', IX .. 'i', '0', ID)
    call('SADD', IX .. 's:' .. ST, ID)
    if PID ~= '' then call('SADD', IX .. 'p:' .. PID, ID) end
    for j = 10, #ARGV do call('SADD', IX .. 't:' .. ARGV[j], ID) end
    local cf = call('GET', IX .. 'cf')
    if not cf then return 1 end
    -- the composites of the families kept (IX.."cf", e.g. ',pu,tc,'), written out here as
    -- ixadd.lua's ix_comp_add would (no helper defined): the key of family f is its field's
    -- value (st, pid, st..':'..pid, each tag) and its score created_at or updated_at, both
    -- NOW for a new session
    for f in string.gmatch(cf, '%a%a') do
      local pre, field = IX .. f .. ':', string.byte(f, 1)
      if field == 115 then  -- 's'
        call('ZADD', pre .. ST, NOW, ID)
      elseif field == 112 then  -- 'p'
        if PID ~= '' then call('ZADD', pre .. PID, NOW, ID) end
      elseif field == 113 then  -- 'q'
        if PID ~= '' then call('ZADD', pre .. ST .. ':' .. PID, NOW, ID) end
      else  -- 't'
        for j = 10, #ARGV do call('ZADD', pre .. ARGV[j], NOW, ID) end
      end
    end
    return 1
  else
    old = call('HGET', IX .. 'r', ID)
  end
  record = {'1', NOW, NOW, EA, ST, PID, '', '0', unpack(ARGV, 10)}
end
