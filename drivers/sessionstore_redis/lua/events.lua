-- Read a page of a session's event log (layout in evlog.lua). KEYS: doc, events, types.
-- ARGV: 1 now_ms ('' = ignore expiry), 2 after_seq, 3 before_seq ('' none), 4 limit
-- ('' none), 5 last ('' none), 6 at_after ms ('' none), 7 at_before ms ('' none),
-- 8... the types (json; none = every type). Bounds are exclusive.
-- Reply: {'OK', {record...}} (ascending seq) | {'NOTFOUND'} | {'PTR', group} | {'CORRUPT'} |
-- {'FORMAT'} (written by a newer sessionstore)
-- Cost: O(log n + page) for every combination while `at` is sorted by seq (a time bound
-- becomes a rank bound by binary search); once an event was appended with an earlier
-- `at` than one before it ('tu'), a time bound is applied by filtering (O(events in the
-- other bounds)).
local doc, ev, et = KEYS[1], KEYS[2], KEYS[3]
local head = d_head(doc)  -- a layout-3 header: no parse of the document
local h = head and {head.ver, head.ea, '2', head.tu, false, head.ti}
  or d_hmget(doc, 'ver', 'ea', 'v', 'tu', 'grp', 'ti')
if not h[1] then
  if h[5] then return {'PTR', h[5]} end
  if redis.call('EXISTS', doc) == 1 then return {'CORRUPT'} end
  return {'NOTFOUND'}
end
if ARGV[1] ~= '' and h[2] and tonumber(h[2]) <= tonumber(ARGV[1]) then return {'NOTFOUND'} end
local format = tonumber(h[3])
if not format then return {'CORRUPT'} end
if format > 2 then return {'FORMAT'} end
if format < 2 and not ev_upgrade(doc, ev, et) then return {'CORRUPT'} end

local lo, hi = tonumber(ARGV[2]), math.huge  -- seq bounds, exclusive
if ARGV[3] ~= '' then hi = tonumber(ARGV[3]) end
local limit, last = tonumber(ARGV[4]), tonumber(ARGV[5])
local want = last or limit
local rev = last ~= nil
local aa, ab = tonumber(ARGV[6]), tonumber(ARGV[7])
local types = {}
for i = 8, #ARGV do types[#types + 1] = ARGV[i] end
if want == 0 or lo + 1 >= hi then return {'OK', {}} end
if #types > 0 and (format < 2 or h[6] ~= '1') and not ev_types(doc, ev, et) then
  return {'CORRUPT'}
end

local function bound(x) if x == math.huge then return '+inf' end return '(' .. string.format('%d', x) end
local function at_of(rec) return tonumber(string.match(rec, '^{"v":2,"s":%d+,"t":".-","a":(%-?%d+),')) end
local function keep(rec)
  if not aa and not ab then return true end
  local a = at_of(rec)
  return a ~= nil and (not aa or a > aa) and (not ab or a < ab)
end

if (aa or ab) and h[4] ~= '1' then
  -- `at` grows with seq: turn the time bounds into seq bounds by binary search on ranks
  local r0 = redis.call('ZCOUNT', ev, '-inf', string.format('%d', lo))
  local r1 = redis.call('ZCOUNT', ev, '-inf', bound(hi)) - 1
  local function at_rank(r) return at_of(redis.call('ZRANGE', ev, r, r)[1]) end
  if aa then  -- the first rank whose at > aa
    local a, b = r0, r1 + 1
    while a < b do
      local m = math.floor((a + b) / 2)
      if at_rank(m) > aa then b = m else a = m + 1 end
    end
    r0 = a
  end
  if ab then  -- the last rank whose at < ab
    local a, b = r0 - 1, r1
    while a < b do
      local m = math.floor((a + b + 1) / 2)
      if at_rank(m) < ab then a = m else b = m - 1 end
    end
    r1 = a
  end
  if r0 > r1 then return {'OK', {}} end
  if #types == 0 then
    local s, e = r0, r1
    if want then if rev then s = math.max(s, e - want + 1) else e = math.min(e, s + want - 1) end end
    return {'OK', redis.call('ZRANGE', ev, s, e)}
  end
  lo = tonumber(redis.call('ZRANGE', ev, r0, r0, 'WITHSCORES')[2]) - 1
  hi = tonumber(redis.call('ZRANGE', ev, r1, r1, 'WITHSCORES')[2]) + 1
  aa, ab = nil, nil
end

if #types == 0 and not aa and not ab then  -- a plain window: one range command
  local got
  if rev then
    if lo == 0 and hi == math.huge then
      got = redis.call('ZRANGE', ev, -want, -1)
    else
      got = redis.call('ZREVRANGEBYSCORE', ev, bound(hi), bound(lo), 'LIMIT', 0, want)
      local n = #got
      for i = 1, math.floor(n / 2) do got[i], got[n - i + 1] = got[n - i + 1], got[i] end
    end
  elseif want then
    got = redis.call('ZRANGEBYSCORE', ev, bound(lo), bound(hi), 'LIMIT', 0, want)
  else
    got = redis.call('ZRANGEBYSCORE', ev, bound(lo), bound(hi))
  end
  return {'OK', got}
end

local out = {}
local chunk = want or 1000
if chunk < 64 and (aa or ab) then chunk = 64 end  -- filtering: read ahead
if #types == 0 then
  -- the log itself, in chunks (one chunk unless a time filter drops events)
  while true do
    local got
    if rev then
      got = redis.call('ZREVRANGEBYSCORE', ev, bound(hi), bound(lo), 'WITHSCORES', 'LIMIT', 0, chunk)
    else
      got = redis.call('ZRANGEBYSCORE', ev, bound(lo), bound(hi), 'WITHSCORES', 'LIMIT', 0, chunk)
    end
    for i = 1, #got, 2 do
      if keep(got[i]) then
        out[#out + 1] = got[i]
        if want and #out >= want then break end
      end
    end
    if #got < 2 * chunk or (want and #out >= want) then break end
    if rev then hi = tonumber(got[#got]) else lo = tonumber(got[#got]) end
  end
else
  -- the type index: each type's seqs in the bounds (up to a page each unless filtering),
  -- merged in seq order, then the records by seq
  local seqs = {}
  for _, ty in ipairs(types) do
    local a = '(' .. ty .. '\0' .. ev_hex(lo)
    local b = (hi == math.huge) and ('[' .. ty .. '\1') or ('(' .. ty .. '\0' .. ev_hex(hi))
    local got
    if want and not aa and not ab then
      if rev then got = redis.call('ZREVRANGEBYLEX', et, b, a, 'LIMIT', 0, want)
      else got = redis.call('ZRANGEBYLEX', et, a, b, 'LIMIT', 0, want) end
    else
      got = redis.call('ZRANGEBYLEX', et, a, b)
    end
    for _, m in ipairs(got) do seqs[#seqs + 1] = tonumber(string.sub(m, -16), 16) end
  end
  if rev then table.sort(seqs, function(x, y) return x > y end) else table.sort(seqs) end
  for _, s in ipairs(seqs) do
    local n = string.format('%d', s)
    local rec = redis.call('ZRANGEBYSCORE', ev, n, n)[1]
    if rec and keep(rec) then
      out[#out + 1] = rec
      if want and #out >= want then break end
    end
  end
end
if rev then
  local n = #out
  for i = 1, math.floor(n / 2) do out[i], out[n - i + 1] = out[n - i + 1], out[i] end
end
return {'OK', out}
