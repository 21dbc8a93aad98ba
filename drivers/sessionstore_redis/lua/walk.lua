-- The next matches of a filtered, ordered query on one index shard.
-- KEYS[1] record hash, KEYS[2] order zset, KEYS[3] expires zset (x), KEYS[4] created zset
-- (c), KEYS[5] updated zset (u), KEYS[6..] candidate sets (grouped, see ARGV 16)
-- ARGV: 1 lex ('1': order by member, scores are 0), 2 desc ('1'),
--   3 start score, 4 start member (exclusive keyset position; '' = from the beginning),
--   5 lo, 6 hi (inclusive score bounds, '' = none), 7 want (0 = count every match),
--   8 budget (entries examined before returning a partial answer),
--   9 now ('' = expired sessions match too), 10 ca_lo, 11 ca_hi, 12 ua_lo, 13 ua_hi,
--   14 ea_before (matches ea < X), 15 has_events ('', '0', '1'),
--   16 group count, then each group's key count (a group matches when the id is in ANY
--      of its sets; every group must match), then the composite count, then per
--      composite the groups it covers ('1,3'); then a forced plan ('' the planner's
--      choice; 'walk', 'sort', 'comp': for the benchmark's plan sweep), then the
--      namespace's key prefix ('' = none): the returned rows' documents are read too, by
--      keys built here (docread.lua; single server and Sentinel, where a script may read
--      keys its call does not name, and Cluster with key layout 4, where '~' stands for
--      this shard's own prefix: its sessions' keys share its slot; with layout 3 the
--      client reads them in a second step), then
--      '1' to have the order walked with its scores always (see NOSC).
--   The composites' keys (sorted sets in the order's sort key, see ixcomp.lua) follow the
--   groups' keys in KEYS; the client passes them only for created_at / updated_at orders,
--   and the script reads one only when its family is complete on the shard (IX.."cd").
-- Reply: {done, last_score, last_member, count, sizes, rows}: rows is the returned rows
-- 'id\1score\1record' (score '' when walked without scores: NOSC) concatenated, each followed by its document when documents are
-- read (read.lua's string: 'field\0value...', '' none, '\1' not a hash), as a list of
-- pieces (pieces.lua), and sizes their lengths, comma-separated: a few frames for the
-- page (the client's pure-Python reply parser costs microseconds per element). A count
-- (want 0) has no rows.
-- The plan: walk the smallest composite when it is no larger than the smallest candidate
-- group (it holds only candidates, already in order), else enumerate the smallest
-- candidate group when it is small, else walk the order (a composite's, if any).
-- Time and expiry conditions are checked with ZSCORE on the time indexes (expiry only
-- when some session of the shard has expired); only the returned rows (and has_events)
-- read the record, in one HMGET.
local LEX, DESC = ARGV[1] == '1', ARGV[2] == '1'
local S0, M0 = ARGV[3], ARGV[4]
local S0N = tonumber(S0)
local LO, HI = tonumber(ARGV[5]), tonumber(ARGV[6])
local WANT, BUDGET = tonumber(ARGV[7]), tonumber(ARGV[8])
local NOWF = tonumber(ARGV[9])
local CA_LO, CA_HI, UA_LO, UA_HI = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12]), tonumber(ARGV[13])
local EA_B, HE = tonumber(ARGV[14]), ARGV[15]
local ORDER = KEYS[2]
local ORDK = (ORDER == KEYS[4] and 'c') or (ORDER == KEYS[5] and 'u') or ''
local NG = tonumber(ARGV[16])
local groups, k = {}, 6
for gi = 1, NG do
  local g = {}
  for _ = 1, tonumber(ARGV[16 + gi]) do g[#g + 1] = KEYS[k]; k = k + 1 end
  groups[gi] = g
end
local comps, a = {}, 17 + NG
local NC = tonumber(ARGV[a] or '0')
-- a composite is read only if its family is complete on this shard (the client's view
-- may be older than the shard's: a namespace emptied meanwhile)
local DONE = NC > 0 and redis.call('GET', string.sub(KEYS[1], 1, -2) .. 'cd') or false
for ci = 1, NC do
  local cov = {}
  for gi in string.gmatch(ARGV[a + ci], '%d+') do cov[tonumber(gi)] = true end
  local key = KEYS[k]
  local fam = string.sub(key, #KEYS[1], #KEYS[1] + 1)
  if DONE and string.find(DONE, fam, 1, true) then comps[#comps + 1] = {key, cov} end
  k = k + 1
end
local FORCE = ARGV[a + NC + 1] or ''
local DOCP = ARGV[a + NC + 2] or ''
-- '~': key layout 4 (Cluster, _keys.py): the documents live under this shard's own prefix
if DOCP == '~' then DOCP = string.sub(KEYS[1], 1, -2) end
local SCORES = ARGV[a + NC + 3] == '1'  -- the order's scores asked for (see NOSC)
local SKIP = {}  -- groups the walked composite covers

local function after_start(s, m)
  if M0 == '' then return true end
  if not LEX and s ~= S0N then
    if DESC then return s < S0N end
    return s > S0N
  end
  if DESC then return blt(m, M0) end
  return blt(M0, m)
end

local function in_sets(m, skip)
  for gi = 1, #groups do
    if gi ~= skip and not SKIP[gi] then
      local hit = false
      for _, key in ipairs(groups[gi]) do
        if redis.call('SISMEMBER', key, m) == 1 then hit = true; break end
      end
      if not hit then return false end
    end
  end
  return true
end

local function between(value, lo, hi)
  return value and not (lo and value < lo) and not (hi and value > hi)
end

-- Does id m (at order score s) pass the time, expiry and has_events conditions?
-- no session of the shard has expired: the expiry check is skipped
if NOWF and not EA_B then
  local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if not first[2] or tonumber(first[2]) > NOWF then NOWF = nil end
end

local function passes(m, s)
  if NOWF or EA_B then
    local ea = tonumber(redis.call('ZSCORE', KEYS[3], m))
    if NOWF and ea and ea <= NOWF then return false end
    if EA_B and not (ea and ea < EA_B) then return false end
  end
  if CA_LO or CA_HI then
    local ca = (ORDK == 'c') and s or tonumber(redis.call('ZSCORE', KEYS[4], m))
    if not between(ca, CA_LO, CA_HI) then return false end
  end
  if UA_LO or UA_HI then
    local ua = (ORDK == 'u') and s or tonumber(redis.call('ZSCORE', KEYS[5], m))
    if not between(ua, UA_LO, UA_HI) then return false end
  end
  if HE ~= '' then
    local rec = redis.call('HGET', KEYS[1], m)
    if not rec or split(rec)[8] ~= HE then return false end
  end
  return true
end

local PARTS, SIZES = {}, {}
local function put(s)
  PARTS[#PARTS + 1] = s
  SIZES[#SIZES + 1] = #s
end

-- The rows {id, score string} with their records (one HMGET) and, with DOCP, their
-- documents, added to the reply; returns how many (a row whose record is gone, a stale
-- order entry, is left out).
local function emit(rows)
  if #rows == 0 then return 0 end
  local ids = {}
  for i, f in ipairs(rows) do ids[i] = f[1] end
  local recs = redis.call('HMGET', KEYS[1], unpack(ids))
  local n = 0
  for i, f in ipairs(rows) do
    if recs[i] then
      n = n + 1
      put(f[1] .. '\1' .. f[2] .. '\1' .. recs[i])
      if DOCP ~= '' then put(read_doc(DOCP, f[1], recs[i])) end
    end
  end
  return n
end

local function reply(out)
  out[5] = csv(SIZES)
  out[6] = pieces(PARTS, SIZES)
  return out
end

local function in_range(s)
  if LEX then return true end
  if LO and s < LO then return false end
  if HI and s > HI then return false end
  return true
end

-- ------------------------------------------------------------------ plan
-- a composite that covers every group holds exactly the candidates, in order: no other
-- plan reads fewer entries, so it is taken without counting the sets (the planner's
-- SCARD and ZCARD calls: a third of a Cluster page's walk calls)
local comp, plan = nil, nil
if FORCE == '' and WANT > 0 and not LEX then
  for _, c in ipairs(comps) do
    local all = true
    for gi = 1, NG do
      if not c[2][gi] then all = false; break end
    end
    if all then comp, plan = c, 'comp'; break end
  end
end
local best, bestn = nil, nil
if not plan then
  for gi, g in ipairs(groups) do
    local n = 0
    for _, key in ipairs(g) do n = n + redis.call('SCARD', key) end
    if not bestn or n < bestn then best, bestn = gi, n end
  end
  local compn = nil
  if WANT > 0 and not LEX then
    for _, c in ipairs(comps) do
      local n = redis.call('ZCARD', c[1])
      if not compn or n < compn then comp, compn = c, n end
    end
  end
  local total = compn or redis.call('ZCARD', ORDER)
  if FORCE ~= '' then
    plan = FORCE
    if plan == 'sort' and not best then plan = 'walk' end
    if plan == 'comp' and not comp then plan = 'walk' end
  elseif comp and compn <= bestn then
    plan = 'comp'
  elseif best and WANT == 0 then
    -- a count enumerates a candidate set in one go only within the budget; a larger one
    -- is walked in budgeted, resumable steps (one script must never hold the server for
    -- long: a million-member SMEMBERS ran past the busy-script limit)
    plan = (bestn < total and bestn <= BUDGET) and 'sort' or 'walk'
  elseif best and (bestn <= 256 or bestn * bestn <= WANT * total) then
    plan = 'sort'
  else
    plan = comp and 'comp' or 'walk'
  end
end
if plan == 'comp' then ORDER, SKIP = comp[1], comp[2] end

if plan == 'sort' then
  local seen, cands = {}, {}
  for _, key in ipairs(groups[best]) do
    for _, m in ipairs(redis.call('SMEMBERS', key)) do
      if not seen[m] then
        seen[m] = true
        if in_sets(m, best) then cands[#cands + 1] = m end
      end
    end
  end
  local found = {}
  for i = 1, #cands, 1000 do
    local last = math.min(i + 999, #cands)
    local scores = redis.call('ZMSCORE', ORDER, unpack(cands, i, last))
    for j = i, last do
      local m, sc = cands[j], scores[j - i + 1]
      if sc then
        local s = tonumber(sc)
        if in_range(s) and after_start(s, m) and passes(m, s) then
          found[#found + 1] = {m, s, sc}
        end
      end
    end
  end
  if WANT == 0 then return {'1', '', '', #found} end
  table.sort(found, function(a, b)
    if not LEX and a[2] ~= b[2] then
      if DESC then return a[2] > b[2] end
      return a[2] < b[2]
    end
    if DESC then return blt(b[1], a[1]) end
    return blt(a[1], b[1])
  end)
  local out, n, i = {'1', '', '', 0}, 0, 1
  while n < WANT and i <= #found do
    local rows = {}
    for j = i, math.min(#found, i + WANT - n - 1) do rows[#rows + 1] = {found[j][1], found[j][3]} end
    i = i + #rows
    n = n + emit(rows)
  end
  out[4] = n
  return reply(out)
end

-- ------------------------------------------------------------------ walk
local CH = 256
local out = {'1', '', '', 0}
-- Walked without scores (no WITHSCORES) when nothing here needs an entry's order score:
-- a created_at / updated_at order (the record holds the score: ca, ua) read from its top,
-- no bounds. Redis formats each score with '%.17g' and tonumber() parses it back (~10 %
-- of a Cluster page's walks); rows carry an empty score instead (the client takes it from
-- the record) and a partial answer's last score is asked for once (ZSCORE).
local NOSC = not SCORES and not LEX and ORDK ~= '' and M0 == '' and not LO and not HI
  and not (ORDK == 'c' and (CA_LO or CA_HI)) and not (ORDK == 'u' and (UA_LO or UA_HI))
local function resumable()
  out[1] = '0'
  if NOSC and out[3] ~= '' then out[2] = redis.call('ZSCORE', ORDER, out[3]) end
end
local count, examined, off = 0, 0, 0
local rows = {}  -- matches whose records are not read yet
local lo, hi = LO, HI
if not LEX and M0 ~= '' then
  if DESC then hi = (hi and math.min(hi, S0N)) or S0N else lo = (lo and math.max(lo, S0N)) or S0N end
end
local function fmt(x, inf) if x then return string.format('%.0f', x) end; return inf end
-- a page's walk reads about the page when most entries match: start there, then double
local size = WANT > 0 and math.min(CH, math.max(16, WANT)) or CH
-- a partial answer (page full or budget spent): the rows read, resumable after out[2..3]
local function partial()
  local n = emit(rows)
  resumable()
  out[4] = WANT > 0 and n or count
  return reply(out)
end
while true do
  local batch, step
  if LEX then
    if DESC then
      batch = redis.call('ZRANGE', ORDER, M0 ~= '' and ('(' .. M0) or '+', '-', 'BYLEX', 'REV', 'LIMIT', off, size)
    else
      batch = redis.call('ZRANGE', ORDER, M0 ~= '' and ('(' .. M0) or '-', '+', 'BYLEX', 'LIMIT', off, size)
    end
    step = 1
  else
    if NOSC then
      if DESC then
        batch = redis.call('ZRANGE', ORDER, '+inf', '-inf', 'BYSCORE', 'REV', 'LIMIT', off, size)
      else
        batch = redis.call('ZRANGE', ORDER, '-inf', '+inf', 'BYSCORE', 'LIMIT', off, size)
      end
      step = 1
    elseif DESC then
      batch = redis.call('ZRANGE', ORDER, fmt(hi, '+inf'), fmt(lo, '-inf'), 'BYSCORE', 'REV', 'LIMIT', off, size, 'WITHSCORES')
      step = 2
    else
      batch = redis.call('ZRANGE', ORDER, fmt(lo, '-inf'), fmt(hi, '+inf'), 'BYSCORE', 'LIMIT', off, size, 'WITHSCORES')
      step = 2
    end
  end
  for i = 1, #batch, step do
    local m = batch[i]
    local sc = step == 2 and batch[i + 1] or (NOSC and '' or '0')
    local s = tonumber(sc)  -- nil without scores: nothing below reads it then
    examined = examined + 1
    out[2], out[3] = sc, m
    if after_start(s, m) and in_sets(m, nil) and passes(m, s) then
      count = count + 1
      if WANT > 0 then
        rows[#rows + 1] = {m, sc}
        if count >= WANT then return partial() end
      end
    end
    if examined >= BUDGET then return partial() end
  end
  if #batch < size * step then break end
  off = off + size
  size = math.min(CH * 4, size * 2)
end
local n = emit(rows)
if WANT > 0 and n < #rows then
  -- stale entries among the rows: the caller asks again from the last position
  resumable()
end
out[4] = WANT > 0 and n or count
return reply(out)
