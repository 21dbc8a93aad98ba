-- Indexing a session that has no index entry yet (the record layout is in index.lua).
-- Apart from index.lua so that append.lua, which needs only this, does not define (on
-- every call) the helpers it never uses. SEP and comp_families are in ixcomp.lua,
-- loaded before this file.

-- The keys of family f (e.g. 'pu') that hold a session with record r (a table).
local function comp_keys(ix, f, r)
  local field = string.sub(f, 1, 1)
  local pre = ix .. f .. ':'
  if field == 's' then return {pre .. r[5]} end
  if field == 'p' then
    if r[6] == '' then return {} end
    return {pre .. r[6]}
  end
  if field == 'q' then
    if r[6] == '' then return {} end
    return {pre .. r[5] .. ':' .. r[6]}
  end
  local out = {}
  for k = 9, #r do out[#out + 1] = pre .. r[k] end
  return out
end

-- Add id (record r, a table) to the composites of family f.
local function comp_add(ix, f, id, r)
  local score = string.sub(f, 2, 2) == 'c' and r[2] or r[3]
  for _, key in ipairs(comp_keys(ix, f, r)) do redis.call('ZADD', key, score, id) end
end

-- Add id (record r, a table, not indexed yet) to the composites the writes keep.
local function ix_comp_add(ix, id, r)
  local cf = comp_families(ix)
  if not cf then return end
  for f in string.gmatch(cf, '%a%a') do comp_add(ix, f, id, r) end
end

-- The entries of id with record r (a table in record order) but its record: ix_add
-- without the record's HSET (create.lua writes the record first, with HSETNX). create.lua
-- writes these same entries out inline on its common path: a change here goes there too.
local function ix_add_entries(ix, id, r)
  redis.call('ZADD', ix .. 'c', r[2], id)
  redis.call('ZADD', ix .. 'u', r[3], id)
  if r[4] == '' then redis.call('ZADD', ix .. 'n', '0', id) else redis.call('ZADD', ix .. 'x', r[4], id) end
  redis.call('ZADD', ix .. 'i', '0', id)
  redis.call('SADD', ix .. 's:' .. r[5], id)
  if r[6] ~= '' then redis.call('SADD', ix .. 'p:' .. r[6], id) end
  for k = 9, #r do redis.call('SADD', ix .. 't:' .. r[k], id) end
  ix_comp_add(ix, id, r)
end

-- Index id with record r (a table in record order), which it does not have an entry for.
local function ix_add(ix, id, r)
  ix_add_entries(ix, id, r)
  redis.call('HSET', ix .. 'r', id, table.concat(r, SEP))
end
