-- Indexing a session that has no index entry yet (the record layout is in index.lua).
-- Apart from index.lua so that append.lua, which needs only this, does not define (on
-- every call) the helpers it never uses.
local SEP = '\0'

-- Composite indexes: sorted sets per field value and sort key, in the shard's slot. A
-- family is one field and one sort key:
--   pc / pu   IX.."pc:"..pid        a processor's sessions by created_at / updated_at
--   sc / su   IX.."sc:"..st         a status's
--   tc / tu   IX.."tc:"..tag        a tag's
--   qc / qu   IX.."qc:"..st..":"..pid   a (status, processor) pair's (no status has ':')
-- A family is kept from its first use on (as the memory store builds a composite list on
-- first use; compose.lua): IX.."cf" lists the families the writes keep (",pu,tc,"),
-- IX.."cd" those complete (back-filled), which the planner reads.
local CF = nil  -- IX.."cf" of this call's shard, read on first need (false: none)

local function comp_families(ix)
  if CF == nil then CF = redis.call('GET', ix .. 'cf') or false end
  return CF
end

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

-- Rescore id in its updated_at composites (an append: only updated_at changed), from its
-- record string rec (read with plain finds: a pattern match costs several times more).
local function ix_touch(ix, id, ua, rec)
  local cf = comp_families(ix)
  if not cf then return end
  local p = 1
  for _ = 1, 4 do p = string.find(rec, SEP, p, true) + 1 end
  local q = string.find(rec, SEP, p, true)
  local st = string.sub(rec, p, q - 1)
  local r = string.find(rec, SEP, q + 1, true)
  local pid = string.sub(rec, q + 1, r - 1)
  if string.find(cf, 'su', 1, true) then redis.call('ZADD', ix .. 'su:' .. st, ua, id) end
  if pid ~= '' then
    if string.find(cf, 'pu', 1, true) then redis.call('ZADD', ix .. 'pu:' .. pid, ua, id) end
    if string.find(cf, 'qu', 1, true) then redis.call('ZADD', ix .. 'qu:' .. st .. ':' .. pid, ua, id) end
  end
  if string.find(cf, 'tu', 1, true) then
    local g = string.find(rec, SEP, r + 1, true)  -- after grp
    local e = string.find(rec, SEP, g + 1, true)  -- after ev: the tags (none: nil)
    while e do
      local f = string.find(rec, SEP, e + 1, true)
      redis.call('ZADD', ix .. 'tu:' .. string.sub(rec, e + 1, (f or 0) - 1), ua, id)
      e = f
    end
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
