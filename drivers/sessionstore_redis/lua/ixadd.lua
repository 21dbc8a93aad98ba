-- Indexing a session that has no index entry yet (the record layout is in index.lua).
-- Apart from index.lua so that append.lua, which needs only this, does not define (on
-- every call) the helpers it never uses.
local SEP = '\0'

-- Composite indexes (sorted sets per field value and sort key, in the shard's slot):
--   IX.."pc:"..pid / "pu:"..pid           a processor's sessions by created_at / updated_at
--   IX.."sc:"..st / "su:"..st             a status's
--   IX.."tc:"..tag / "tu:"..tag           a tag's
--   IX.."qc:"..st..":"..pid / "qu:"..     a (status, processor) pair's (no status has ':')
--   IX.."cl"                              "1" once every session of the shard is in them
--                                          (stores written before them are back-filled by
--                                          compose.lua; the planner uses them only then)

-- Add id to its composites (record r, a table; nothing there yet).
local function ix_comp_add(ix, id, r)
  local ca, ua, st, pid = r[2], r[3], r[5], r[6]
  redis.call('ZADD', ix .. 'sc:' .. st, ca, id)
  redis.call('ZADD', ix .. 'su:' .. st, ua, id)
  if pid ~= '' then
    redis.call('ZADD', ix .. 'pc:' .. pid, ca, id)
    redis.call('ZADD', ix .. 'pu:' .. pid, ua, id)
    redis.call('ZADD', ix .. 'qc:' .. st .. ':' .. pid, ca, id)
    redis.call('ZADD', ix .. 'qu:' .. st .. ':' .. pid, ua, id)
  end
  for k = 9, #r do
    redis.call('ZADD', ix .. 'tc:' .. r[k], ca, id)
    redis.call('ZADD', ix .. 'tu:' .. r[k], ua, id)
  end
end

-- Rescore id in its updated_at composites (an append: only updated_at changed). st, pid:
-- the session's status and processor ('' none); tags: '\0tag1\0tag2...' ('' none).
local function ix_touch(ix, id, ua, st, pid, tags)
  redis.call('ZADD', ix .. 'su:' .. st, ua, id)
  if pid ~= '' then
    redis.call('ZADD', ix .. 'pu:' .. pid, ua, id)
    redis.call('ZADD', ix .. 'qu:' .. st .. ':' .. pid, ua, id)
  end
  if tags ~= '' then
    for tag in string.gmatch(tags, '%z([^%z]*)') do redis.call('ZADD', ix .. 'tu:' .. tag, ua, id) end
  end
end

-- Index id with record r (a table in record order), which it does not have an entry for.
local function ix_add(ix, id, r)
  redis.call('ZADD', ix .. 'c', r[2], id)
  redis.call('ZADD', ix .. 'u', r[3], id)
  if r[4] == '' then redis.call('ZADD', ix .. 'n', 0, id) else redis.call('ZADD', ix .. 'x', r[4], id) end
  redis.call('ZADD', ix .. 'i', 0, id)
  redis.call('SADD', ix .. 's:' .. r[5], id)
  if r[6] ~= '' then redis.call('SADD', ix .. 'p:' .. r[6], id) end
  for k = 9, #r do redis.call('SADD', ix .. 't:' .. r[k], id) end
  ix_comp_add(ix, id, r)
  redis.call('HSET', ix .. 'r', id, table.concat(r, SEP))
end
