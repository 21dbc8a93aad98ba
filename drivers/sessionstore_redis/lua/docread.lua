-- Reading a listed session's document inside a walk (walk.lua, walkn.lua), as read.lua
-- sends it: doc.lua's string (a layout-2 hash's fields NUL-separated; '\1' another type),
-- following a grouped session's stub to its group's keys (the stub itself when the group
-- holds none). DOCP is the prefix the session keys follow ('<prefix>' on one server,
-- a shard's '<prefix>{~k}:' with Cluster key layout 4, _keys.py).
local function read_one(key)
  local s = redis.pcall('GET', key)
  if type(s) == 'table' then  -- a layout-2 hash (or another type: '\1')
    local f = redis.pcall('HGETALL', key)
    if f.err then return '\1' end
    if #f == 2 and f[1] == 'grp' then return '\3G' .. f[2] end
    return table.concat(f, '\0')
  end
  return s or ''
end

-- The group field (the 7th) of an index record (index.lua), '' when there is none.
local function record_group(rec)
  local at = 1
  for _ = 1, 6 do
    local i = string.find(rec, '\0', at, true)
    if not i then return '' end
    at = i + 1
  end
  local j = string.find(rec, '\0', at, true)
  return string.sub(rec, at, (j or 0) - 1)
end

-- Session id's document under DOCP; rec is its index record. With key layout 4 a grouped
-- session's keys are under its group's shard and its stub under its id's: a shard's walk
-- finds no stub there, and takes the group from the record.
local function read_doc(docp, id, rec)
  local s = read_one(docp .. '{' .. id .. '}:doc')
  local grp = nil
  if string.byte(s, 2) == 71 and string.byte(s, 1) == 3 then
    grp = string.sub(s, 3)
  elseif s == '' and rec then
    grp = record_group(rec)
    if grp == '' then grp = nil end
  end
  if grp then
    local g = read_one(docp .. '{' .. grp .. '}:' .. id .. ':doc')
    if g ~= '' then return g end
  end
  return s
end
