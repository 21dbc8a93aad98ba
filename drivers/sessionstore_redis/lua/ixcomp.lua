-- The composite families an index shard keeps, and re-scoring a session in its
-- updated_at composites: what an append's short path needs of the index helpers (the
-- record layout is in index.lua). Loaded before ixadd.lua, which uses it.
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
