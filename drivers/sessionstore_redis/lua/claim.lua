-- The home key of a grouped session: KEYS[1] = "<prefix>{<id>}:doc" holds a stub hash
-- {grp = <group>} that points to the group's slot, so the session is found from its id.
-- ARGV: mode, group, now_ms[, old group]
--   claim    -> OK | EXISTS (a live session has the id) | EXPIRED (an expired ungrouped
--               session has it: delete it first) | PTR <group> (another group claims it)
--   replace  -> OK if the stub still points to ARGV[4] (then it points to ARGV[2]) | RETRY
--   release  -> OK (the stub is removed if it points to ARGV[2])
local doc, mode, grp = KEYS[1], ARGV[1], ARGV[2]
local h = d_hmget(doc, 'ver', 'ea', 'grp')
if mode == 'claim' then
  if h[1] then
    if (not h[2]) or tonumber(h[2]) > tonumber(ARGV[3]) then return {'EXISTS'} end
    return {'EXPIRED'}
  end
  if h[3] then
    if h[3] == grp then return {'OK'} end
    return {'PTR', h[3]}
  end
  if redis.call('EXISTS', doc) == 1 then return {'CORRUPT'} end
  d_hset(doc, 'grp', grp)
  return {'OK'}
elseif mode == 'replace' then
  if (not h[1]) and h[3] == ARGV[4] then
    d_hset(doc, 'grp', grp)
    return {'OK'}
  end
  return {'RETRY'}
end
if (not h[1]) and h[3] == grp then d_del(doc) end
return {'OK'}
