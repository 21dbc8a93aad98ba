-- The rest of create.lua once the index helpers are defined (after ixcomp.lua and
-- ixadd.lua): when something holds the id, the `if` that create_check.lua closes (after
-- dochead.lua and doc.lua); create_reindex.lua ends the case of an id whose index record
-- outlived its document.

-- the document and the index entries of a session written over an expired one; true when
-- the id still had index entries (create_reindex.lua moves them, after index.lua)
local function write_new()
  if KEYS[2] then
    redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
  else  -- a generated id (create.lua): 'P{id}:doc' names the others 'P{id}:events', ...
    local base = string.sub(doc, 1, -4)
    redis.call('DEL', base .. 'events', base .. 'ckpt', base .. 'etypes', base .. 'ekeys')
  end
  if EXP ~= '' then
    redis.call('SET', doc, ARGV[6], 'PXAT', EXP)
  else
    redis.call('SET', doc, ARGV[6])
  end
  if IX ~= '' then
    record = {'1', NOW, NOW, EA, ST, PID, '', '0', unpack(ARGV, 10)}
    if redis.call('HSETNX', IX .. 'r', ID, table.concat(record, SEP)) == 1 then
      ix_add_entries(IX, ID, record)
    else
      old = redis.call('HGET', IX .. 'r', ID)
    end
  end
  return old
end

if not free then
