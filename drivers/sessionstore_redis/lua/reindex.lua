-- Apply index updates to one index shard (Cluster: the pipelined second step of a write,
-- and lazy repairs by readers). KEYS[1] = the shard's record hash (routes the call).
-- ARGV: shard prefix, item count, then per item: mode, id, payload
--   P <record>      upsert, unless the stored record is newer (out-of-order delivery)
--   D <ca> <ver>    delete, unless the stored record is newer
--   X <record>      delete only if the stored record is exactly <record> (a reader's repair)
local IX, n, pos, done = ARGV[1], tonumber(ARGV[2]), 3, 0
for _ = 1, n do
  local mode, id = ARGV[pos], ARGV[pos + 1]
  local old = redis.call('HGET', IX .. 'r', id)
  if mode == 'P' then
    local r = split(ARGV[pos + 2])
    pos = pos + 3
    if not (old and newer(split(old), r[2], r[1])) then
      ix_set(IX, id, r, old)
      done = done + 1
    end
  elseif mode == 'D' then
    local ca, ver = ARGV[pos + 2], ARGV[pos + 3]
    pos = pos + 4
    if old and not newer(split(old), ca, ver) then
      ix_del(IX, id)
      done = done + 1
    end
  else
    local want = ARGV[pos + 2]
    pos = pos + 3
    if old and old == want then
      ix_del(IX, id)
      done = done + 1
    end
  end
end
return done
