-- Read a page of a session's event log. KEYS: doc, events.
-- ARGV: now_ms ('' = ignore expiry), after_seq, limit ('' none), last ('' none)
-- Reply: {'OK', first_seq_returned, {event...}} | {'NOTFOUND'} | {'PTR', group} | {'CORRUPT'}
local h = redis.call('HMGET', KEYS[1], 'ver', 'ea', 'ec', 'ls', 'grp')
if not h[1] then
  if h[5] then return {'PTR', h[5]} end
  if redis.call('EXISTS', KEYS[1]) == 1 then return {'CORRUPT'} end
  return {'NOTFOUND'}
end
if ARGV[1] ~= '' and h[2] and tonumber(h[2]) <= tonumber(ARGV[1]) then return {'NOTFOUND'} end
local ec, ls = tonumber(h[3]), tonumber(h[4])
if not ec or not ls then return {'CORRUPT'} end
local first = ls - ec + 1
local s = math.max(tonumber(ARGV[2]) + 1, first)
if ARGV[4] ~= '' then s = math.max(s, ls - tonumber(ARGV[4]) + 1) end
local e = ls
if ARGV[3] ~= '' then e = math.min(e, s + tonumber(ARGV[3]) - 1) end
if s > e then return {'OK', s, {}} end
return {'OK', s, redis.call('LRANGE', KEYS[2], s - first, e - first)}
