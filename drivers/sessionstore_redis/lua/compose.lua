-- Start keeping a composite family on one index shard (ixcomp.lua) and back-fill it: a
-- batch of sessions per call, in id order, atomic per call. The first call adds the
-- family to IX.."cf", so every write from then on keeps it for the sessions it touches;
-- once the walk reaches the end every session is in it and it joins IX.."cd" (complete:
-- the planner reads it only then).
-- KEYS[1] the shard's record hash (routes the call). ARGV: 1 shard prefix, 2 family
-- ('pu', ...), 3 the last id done ('' = from the beginning), 4 batch size.
-- Reply: {'1', ''} when the family is complete, else {'0', last id done}.
local IX, F, AFTER, N = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local done = redis.call('GET', IX .. 'cd') or ','
if string.find(done, ',' .. F .. ',', 1, true) then return {'1', ''} end
local kept = comp_families(IX) or ','
if not string.find(kept, ',' .. F .. ',', 1, true) then
  redis.call('SET', IX .. 'cf', kept .. F .. ',')
end
local ids = redis.call('ZRANGE', IX .. 'i', AFTER == '' and '-' or ('(' .. AFTER), '+', 'BYLEX', 'LIMIT', 0, N)
if #ids > 0 then
  local recs = redis.call('HMGET', IX .. 'r', unpack(ids))
  for j, id in ipairs(ids) do
    if recs[j] then comp_add(IX, F, id, split(recs[j])) end
  end
end
if #ids < N then
  redis.call('SET', IX .. 'cd', done .. F .. ',')
  return {'1', ''}
end
return {'0', ids[#ids]}
