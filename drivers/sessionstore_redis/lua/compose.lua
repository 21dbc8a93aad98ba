-- Back-fill the composite indexes of one index shard (stores written before they existed;
-- see ixadd.lua): a batch of sessions per call, in id order, atomic per call. Writes keep
-- the composites of every session they touch meanwhile, so once the walk reaches the end
-- every session is in them and the shard is marked ('cl'); the planner reads them only then.
-- KEYS[1] the shard's record hash (routes the call). ARGV: 1 shard prefix, 2 the last id
-- done ('' = from the beginning), 3 batch size.
-- Reply: {'1', ''} when the shard is complete, else {'0', last id done}.
local IX, AFTER, N = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', IX .. 'cl') == 1 then return {'1', ''} end
local ids = redis.call('ZRANGE', IX .. 'i', AFTER == '' and '-' or ('(' .. AFTER), '+', 'BYLEX', 'LIMIT', 0, N)
if #ids > 0 then
  local recs = redis.call('HMGET', IX .. 'r', unpack(ids))
  for j, id in ipairs(ids) do
    if recs[j] then ix_comp_add(IX, id, split(recs[j])) end
  end
end
if #ids < N then
  redis.call('SET', IX .. 'cl', '1')
  return {'1', ''}
end
return {'0', ids[#ids]}
