-- Secondary-index helpers (prepended to the scripts that maintain indexes).
--
-- One index shard lives under the prefix IX (hash tag "{~<shard>}"):
--   IX.."r"         hash  id -> record "ver\0ca\0ua\0ea\0st\0pid\0grp\0ev\0tag1\0tag2..."
--   IX.."c"/"u"     zsets id scored by created_at / updated_at (epoch ms)
--   IX.."x"         zset  id scored by expires_at (sessions with an expiry)
--   IX.."n"         zset  id, score 0 (sessions without an expiry, ordered by id)
--   IX.."i"         zset  id, score 0 (every session, ordered by id)
--   IX.."s:"..st, IX.."p:"..pid, IX.."t:"..tag   sets of ids
-- Empty strings stand for "none" (ea, pid, grp); ev is "1" when the session has events.
-- SEP and comp_families are in ixcomp.lua, ix_add in ixadd.lua, loaded before this file.

local function split(s)
  local out, start = {}, 1
  while true do
    local i = string.find(s, SEP, start, true)
    if not i then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end

local function ix_unset(ix, id, o)
  redis.call('ZREM', ix .. 'c', id)
  redis.call('ZREM', ix .. 'u', id)
  if o[4] ~= '' then redis.call('ZREM', ix .. 'x', id) else redis.call('ZREM', ix .. 'n', id) end
  redis.call('ZREM', ix .. 'i', id)
  redis.call('SREM', ix .. 's:' .. o[5], id)
  if o[6] ~= '' then redis.call('SREM', ix .. 'p:' .. o[6], id) end
  for k = 9, #o do redis.call('SREM', ix .. 't:' .. o[k], id) end
  local cf = comp_families(ix)
  if cf then
    for f in string.gmatch(cf, '%a%a') do
      for _, key in ipairs(comp_keys(ix, f, o)) do redis.call('ZREM', key, id) end
    end
  end
end

local function same_tags(o, r)
  if #o ~= #r then return false end
  for k = 9, #o do if o[k] ~= r[k] then return false end end
  return true
end

-- Update id's composites (of the families the writes keep) from record o to record r.
local function ix_comp_set(ix, id, o, r)
  local cf = comp_families(ix)
  if not cf then return end
  local changed = {
    s = o[5] ~= r[5],
    p = o[6] ~= r[6],
    q = o[5] ~= r[5] or o[6] ~= r[6],
    t = not same_tags(o, r),
  }
  for f in string.gmatch(cf, '%a%a') do
    local at = string.sub(f, 2, 2) == 'c' and 2 or 3
    if changed[string.sub(f, 1, 1)] then
      local keep = {}
      for _, key in ipairs(comp_keys(ix, f, r)) do
        keep[key] = true
        redis.call('ZADD', key, r[at], id)
      end
      for _, key in ipairs(comp_keys(ix, f, o)) do
        if not keep[key] then redis.call('ZREM', key, id) end
      end
    elseif o[at] ~= r[at] then
      comp_add(ix, f, id, r)
    end
  end
end

-- Index id with record r (a table in record order); old is the stored record string or false.
local function ix_set(ix, id, r, old)
  if old then
    local o = split(old)
    if o[2] ~= r[2] then redis.call('ZADD', ix .. 'c', r[2], id) end
    if o[3] ~= r[3] then redis.call('ZADD', ix .. 'u', r[3], id) end
    if o[4] ~= r[4] then
      if o[4] == '' then redis.call('ZREM', ix .. 'n', id) end
      if r[4] == '' then
        redis.call('ZREM', ix .. 'x', id)
        redis.call('ZADD', ix .. 'n', '0', id)
      else
        redis.call('ZADD', ix .. 'x', r[4], id)
      end
    end
    if o[5] ~= r[5] then
      redis.call('SREM', ix .. 's:' .. o[5], id)
      redis.call('SADD', ix .. 's:' .. r[5], id)
    end
    if o[6] ~= r[6] then
      if o[6] ~= '' then redis.call('SREM', ix .. 'p:' .. o[6], id) end
      if r[6] ~= '' then redis.call('SADD', ix .. 'p:' .. r[6], id) end
    end
    local seen = {}
    for k = 9, #r do seen[r[k]] = true end
    for k = 9, #o do
      if seen[o[k]] then seen[o[k]] = false else redis.call('SREM', ix .. 't:' .. o[k], id) end
    end
    for k = 9, #r do
      if seen[r[k]] then redis.call('SADD', ix .. 't:' .. r[k], id) end
    end
    ix_comp_set(ix, id, o, r)
  else
    return ix_add(ix, id, r)
  end
  redis.call('HSET', ix .. 'r', id, table.concat(r, SEP))
end

local function ix_del(ix, id)
  local old = redis.call('HGET', ix .. 'r', id)
  if old then
    ix_unset(ix, id, split(old))
    redis.call('HDEL', ix .. 'r', id)
  end
end

-- Is record o (a table) newer than (ca, ver)? Used to apply out-of-order updates safely.
local function newer(o, ca, ver)
  local oca, nca = tonumber(o[2]), tonumber(ca)
  if oca ~= nca then return oca > nca end
  return tonumber(o[1]) > tonumber(ver)
end
