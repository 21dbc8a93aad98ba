-- Events by key and by seq (get_event, and the generic write path's reads): the key
-- index gives a key's seq, the log the record. KEYS: doc, events, keys.
-- ARGV: 1 now_ms ('' = ignore expiry), 2 number of keys, then the keys (json), then seqs.
-- Reply: {'OK', record...} (found ones, each once, in seq order) | {'NOTFOUND'} |
-- {'PTR', group} | {'CORRUPT'}
local doc = KEYS[1]
local h = d_hmget(doc, 'ver', 'ea', 'v', 'grp')
if not h[1] then
  if h[4] then return {'PTR', h[4]} end
  if redis.call('EXISTS', doc) == 1 then return {'CORRUPT'} end
  return {'NOTFOUND'}
end
if ARGV[1] ~= '' and h[2] and tonumber(h[2]) <= tonumber(ARGV[1]) then return {'NOTFOUND'} end
local format = tonumber(h[3])
if not format then return {'CORRUPT'} end
if format > 2 then return {'FORMAT'} end
local nk = tonumber(ARGV[2])
local seqs, seen = {}, {}
local function want(s)
  local n = tonumber(s)
  if n and not seen[n] then seen[n] = true; seqs[#seqs + 1] = n end
end
for i = 3, 2 + nk do
  local stored = redis.call('HGET', KEYS[3], ARGV[i])
  if stored then want(string.match(stored, '^(%d+)')) end
end
for i = 3 + nk, #ARGV do want(ARGV[i]) end
table.sort(seqs)
local out = {}
if format < 2 then
  -- layout 1 (not converted yet: reads do not write): no keys; seq = first + position
  if redis.call('TYPE', KEYS[2])['ok'] ~= 'list' then return {'OK', out} end
  local c = d_hmget(doc, 'ec', 'ls')
  local first = (tonumber(c[2]) or 0) - (tonumber(c[1]) or 0) + 1
  for _, s in ipairs(seqs) do
    local b = redis.call('LINDEX', KEYS[2], s - first)
    if s >= first and b then
      local t, a, rest = string.match(b, '^{"v":1,"type":(".-"),"at":(%-?%d+),"data":(.*)$')
      if not t then return {'CORRUPT'} end
      out[#out + 1] = '{"v":2,"s":' .. string.format('%d', s) .. ',"t":' .. t .. ',"a":' .. a .. ',"d":' .. rest
    end
  end
  return {'OK', out}
end
for _, s in ipairs(seqs) do
  local n = string.format('%d', s)
  local rec = redis.call('ZRANGEBYSCORE', KEYS[2], n, n)[1]
  if rec then out[#out + 1] = rec end
end
return {'OK', out}
