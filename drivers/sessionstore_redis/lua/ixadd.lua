-- Indexing a session that has no index entry yet (the record layout is in index.lua).
-- Apart from index.lua so that append.lua, which needs only this, does not define (on
-- every call) the helpers it never uses.
local SEP = '\0'

-- Index id with record r (a table in record order), which it does not have an entry for.
local function ix_add(ix, id, r)
  redis.call('ZADD', ix .. 'c', r[2], id)
  redis.call('ZADD', ix .. 'u', r[3], id)
  if r[4] == '' then redis.call('ZADD', ix .. 'n', 0, id) else redis.call('ZADD', ix .. 'x', r[4], id) end
  redis.call('ZADD', ix .. 'i', 0, id)
  redis.call('SADD', ix .. 's:' .. r[5], id)
  if r[6] ~= '' then redis.call('SADD', ix .. 'p:' .. r[6], id) end
  for k = 9, #r do redis.call('SADD', ix .. 't:' .. r[k], id) end
  redis.call('HSET', ix .. 'r', id, table.concat(r, SEP))
end
