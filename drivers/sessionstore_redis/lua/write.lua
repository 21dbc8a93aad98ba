-- Apply session writes atomically: phase 1 checks every op, phase 2 writes them all.
-- No JSON is decoded or encoded here: values arrive as the JSON bytes the client encoded.
--
-- ARGV: now_ms, grace_ms, token, max_bytes, index prefix ('' = the client maintains the
-- indexes, as on Cluster), op count, then the ops. Every op starts with
--   kind, key base (doc = KEYS[kb], events = KEYS[kb+1], checkpoints = KEYS[kb+2],
--   event types = KEYS[kb+3], event keys = KEYS[kb+4]; the event log is in evlog.lua),
--   id, group ('' none), expected version ('' none), stub key ('' none: KEYS[n] is the
--   id's home key, where a grouped session written anew gets its stub, see claim.lua;
--   only where one script may touch both slots)
-- Kinds: C create, F full mutation (the generic engine), U update, T touch, R trim,
-- P pop, X truncate, E delete events, A append that creates the session or sets its
-- expiry, D delete (a plain append_events has its own, smaller script: append.lua).
-- R, P, X and E's result is {document, number removed, popped record (P only)...}; A's {document, per event as append.lua's
-- keyed reply, '1' if it created the session}.
-- Reply: {'OK', result per op} | {'DONE', doc} (a retried call that had already been
-- applied) | {'!', code, id, a, b} (nothing was written).
local NOW, GRACE, TOKEN = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local NOWN, MAXB, IX, NOPS = tonumber(ARGV[1]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local pos = 7
local function nx() local v = ARGV[pos]; pos = pos + 1; return v end
local function nxn() return tonumber(nx()) end
local function plist() local n, t = nxn(), {}; for i = 1, n do t[i] = {nx(), nx()} end; return t end
local function vlist() local n, t = nxn(), {}; for i = 1, n do t[i] = nx() end; return t end
-- numbers as integers: tostring would print a version near 2^62 as 4.6116860184274e+18
local function str(x) if type(x) == 'number' then return string.format('%d', x) end return tostring(x or '') end
local function fail(code, id, a, b) return {'!', code, id, str(a), str(b)} end

local function call_chunked(cmd, key, items)
  for i = 1, #items, 1000 do
    redis.call(cmd, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

local function psize(ps) local s = 0; for _, p in ipairs(ps) do s = s + #p[1] + #p[2] + 2 end; return s end
local function objsize(s) if s == 0 then return 2 end; return 1 + s end

local function head(doc)
  local h = d_hmget(doc, 'ver', 'ea', 'wt', 'grp', 'v', 'ca', 'ua')
  local st = {ver = 0, wt = h[3], grp = h[4], ca = h[6] or '', ua = tonumber(h[7]) or 0}
  if h[1] then
    st.ver = tonumber(h[1])
    local v = tonumber(h[5])
    if not st.ver or not v then st.bad = 'CORRUPT'
    elseif v > 2 then st.bad = 'FORMAT'
    end
    st.v = v
    st.exists = true
    st.live = (not h[2]) or tonumber(h[2]) > NOWN
    st.ea = h[2]
  elseif h[4] then
    st.stub = true
  elseif redis.call('EXISTS', doc) == 1 then
    st.bad = 'CORRUPT'
  end
  return st
end

local function expire(o, ea)
  d_flush(o.doc)  -- a deferred write first (doc.lua): the expiry is set on the key it makes
  if ea and ea ~= '' then
    local at = string.format('%.0f', tonumber(ea) + GRACE)
    redis.call('PEXPIREAT', o.doc, at)
    redis.call('PEXPIREAT', o.ev, at)
    redis.call('PEXPIREAT', o.ck, at)
    redis.call('PEXPIREAT', o.et, at)
    redis.call('PEXPIREAT', o.ek, at)
  else
    redis.call('PERSIST', o.doc)
    redis.call('PERSIST', o.ev)
    redis.call('PERSIST', o.ck)
    redis.call('PERSIST', o.et)
    redis.call('PERSIST', o.ek)
  end
end

local function put_fields(doc, pre, ps, out)
  for _, p in ipairs(ps) do out[#out + 1] = pre .. p[1]; out[#out + 1] = p[2] end
end

local function ix_refresh(o, tags)
  local old = redis.call('HGET', IX .. 'r', o.id)
  local h = d_hmget(o.doc, 'ver', 'ca', 'ua', 'ea', 'st', 'pid', 'grp', 'ec')
  local r = {h[1], h[2], h[3], h[4] or '', h[5], h[6] or '', h[7] or '',
             (tonumber(h[8]) or 0) > 0 and '1' or '0'}
  if tags == 'keep' and old then
    local s = split(old)
    for k = 9, #s do r[#r + 1] = s[k] end
  else
    -- in byte order, as record_of sorts them (HKEYS gives insertion order): a record that
    -- differs from the document's makes readers drop the row as stale
    local tl = {}
    for _, f in ipairs(d_keys(o.doc)) do
      if string.sub(f, 1, 2) == 't:' then tl[#tl + 1] = string.sub(f, 3) end
    end
    table.sort(tl, blt)
    for _, t in ipairs(tl) do r[#r + 1] = t end
  end
  ix_set(IX, o.id, r, old)
end

-- ------------------------------------------------------------------ parse
local ops = {}
for i = 1, NOPS do
  local o = {kind = nx()}
  local kb = nxn()
  o.doc, o.ev, o.ck, o.et, o.ek = KEYS[kb], KEYS[kb + 1], KEYS[kb + 2], KEYS[kb + 3], KEYS[kb + 4]
  o.id, o.grp, o.expect = nx(), nx(), nx()
  local hb = nx()
  if hb ~= '' then o.home = KEYS[tonumber(hb)] end
  local k = o.kind
  if k == 'C' then
    o.ea, o.st, o.pid = nx(), nx(), nx()
    o.tags, o.dp, o.mp = vlist(), plist(), plist()
  elseif k == 'F' then
    o.flags, o.newver = nx(), nx()
    if string.find(o.flags, 's', 1, true) then
      o.ca, o.ua, o.ea, o.st, o.pid, o.ec, o.ls = nx(), nx(), nx(), nx(), nx(), nx(), nx()
      o.tags, o.dp, o.mp = vlist(), plist(), plist()
    end
    o.events, o.trim, o.trunc, o.dseqs = vlist(), nx(), nx(), vlist()
    o.cps, o.cpdel = plist(), vlist()
  elseif k == 'U' then
    o.dmode, o.dp, o.drem = nx(), plist(), vlist()
    o.mmode, o.mp, o.mrem = nx(), plist(), vlist()
    o.st, o.pidmode, o.pid = nx(), nx(), nx()
    o.tmode, o.tadd, o.trem = nx(), vlist(), vlist()
    o.eamode, o.ea = nx(), nx()
  elseif k == 'T' then
    o.eamode, o.ea = nx(), nx()
  elseif k == 'R' then
    o.keep = nxn()
  elseif k == 'P' then
    o.n = nxn()
  elseif k == 'X' then
    o.after = nxn()
  elseif k == 'E' then
    o.seqs, o.keys = vlist(), vlist()
  elseif k == 'A' then
    o.create = nx()
    if o.create == 'c' then
      o.ea, o.st, o.pid = nx(), nx(), nx()
      o.tags, o.dp, o.mp = vlist(), plist(), plist()
    end
    o.eamode, o.newea, o.force, o.keyed = nx(), nx(), nx(), nx()
    o.events = vlist()
  end
  ops[i] = o
end

-- ------------------------------------------------------------------ phase 1: checks
local function resize(o, pre, mode, ps, rem, size)
  if mode == 'R' then return psize(ps) end
  if #ps == 0 and #rem == 0 then return size end
  local over = {}
  local function oldlen(f)
    local l = over[f]
    if l == nil then l = #(d_hget(o.doc, f) or '') end
    return l
  end
  for _, p in ipairs(ps) do
    local f = pre .. p[1]
    local l = oldlen(f)
    if l > 0 then size = size - (#p[1] + l + 2) end
    size = size + #p[1] + #p[2] + 2
    over[f] = #p[2]
  end
  for _, key in ipairs(rem) do
    local f = pre .. key
    local l = oldlen(f)
    if l > 0 then size = size - (#key + l + 2) end
    over[f] = 0
  end
  return size
end

-- A batch may hold an update and an append of one session (a commit, _commits.py): the
-- later op is checked against the head the earlier one leaves (its version, its
-- expiry), never against the stored one, and has no retry check of its own (wt false:
-- the session's first op has it)
local after = {}
for _, o in ipairs(ops) do
  local cur = after[o.doc] or head(o.doc)
  o.cur = cur
  if cur.bad then return fail(cur.bad, o.id) end
  if cur.stub then return fail('PTR', o.id, cur.grp) end
  if o.home then
    -- claim.lua's 'claim' in the same step: fine when the home key is free or already
    -- points here; anything else (a session or another group holds the id, a corrupt
    -- home key) is left to the client's separate claim, which sorts it out
    local h = d_hmget(o.home, 'ver', 'grp')
    if h[1] or (h[2] and h[2] ~= o.grp) or (not h[2] and redis.call('EXISTS', o.home) == 1) then
      return fail('CLAIM', o.id)
    end
    o.claim = not h[2]
  end
  local k, expect = o.kind, tonumber(o.expect)
  if k == 'C' then
    if cur.exists and cur.live then
      if cur.wt == TOKEN then return {'DONE', d_str(o.doc)} end
      return fail('EXISTS', o.id)
    end
    o.ds, o.ms = psize(o.dp), psize(o.mp)
  elseif k == 'A' then
    if cur.exists and cur.live and cur.wt == TOKEN then  -- this call, applied by an earlier try
      return {'DONE', d_str(o.doc)}
    end
    if not (cur.exists and cur.live) then
      if o.create ~= 'c' then return fail('NOTFOUND', o.id) end
      if expect then return fail('CONFLICT', o.id, expect, 0) end
      o.creating = true
      o.ds, o.ms = psize(o.dp), psize(o.mp)
      local total = objsize(o.ds) + objsize(o.ms)
      if total > MAXB then return fail('QUOTA', o.id, total, MAXB) end
    elseif expect and cur.ver ~= expect then
      return fail('CONFLICT', o.id, expect, cur.ver)
    end
  elseif k == 'F' and (o.expect == 'skip' or o.expect == 'over' or o.expect == 'newer') then
    -- put_records' merge strategies, decided here so a restore is one round trip
    o.outcome = 'C'
    if cur.exists and cur.live then
      o.outcome = 'O'
      local ua, ver = tonumber(o.ua), tonumber(o.newver)
      if o.expect == 'skip' or (o.expect == 'newer'
          and (ua < cur.ua or (ua == cur.ua and ver <= cur.ver))) then
        o.skip = true
      end
    end
    o.ds, o.ms = psize(o.dp), psize(o.mp)
  elseif k == 'F' then
    if cur.ver ~= expect then
      if o.newver ~= '' and cur.wt == TOKEN and cur.ver == tonumber(o.newver) then
        return {'DONE', d_str(o.doc)}
      end
      return fail('CONFLICT', o.id, expect, cur.ver)
    end
    if o.ca then o.ds, o.ms = psize(o.dp), psize(o.mp) end
  elseif k == 'D' then
    if o.expect == 'expired' then
      if cur.exists and cur.live then return fail('EXISTS', o.id) end
    elseif cur.exists and cur.live and expect and cur.ver ~= expect then
      return fail('CONFLICT', o.id, expect, cur.ver)
    end
  else
    -- this call's token: its earlier attempt was applied (an update followed by an
    -- append of the session in the same call left it a version further on)
    if expect and cur.ver > expect and cur.wt == TOKEN then
      return {'DONE', d_str(o.doc)}
    end
    if not (cur.exists and cur.live) then return fail('NOTFOUND', o.id) end
    if expect and cur.ver ~= expect then return fail('CONFLICT', o.id, expect, cur.ver) end
    if k == 'U' then
      local sz = d_hmget(o.doc, 'ds', 'ms')
      o.ds = resize(o, 'd:', o.dmode, o.dp, o.drem, tonumber(sz[1]) or 0)
      o.ms = resize(o, 'm:', o.mmode, o.mp, o.mrem, tonumber(sz[2]) or 0)
      local total = objsize(o.ds) + objsize(o.ms)
      if total > MAXB then return fail('QUOTA', o.id, total, MAXB) end
    end
  end
  if cur.exists and cur.v < 2 and not o.creating and (k == 'R' or k == 'P' or k == 'X' or k == 'E' or k == 'A'
      or (k == 'F' and not string.find(o.flags, 'd', 1, true)
          and not string.find(o.flags, 'r', 1, true))) then
    -- a layout-1 log, converted before anything is decided on it (evlog.lua): the same
    -- events in the new layout, so this is no change of the session even if a later op
    -- of the call fails its check
    if not ev_upgrade(o.doc, o.ev, o.et) then return fail('CORRUPT', o.id) end
  end
  if k == 'A' then
    if o.keyed == '1' then  -- a session being created has no stored keys (yet)
      local bad
      o.flags, o.new, bad = ev_dedupe(o.ev, (not o.creating) and o.ek or nil, o.events, 1, 5, 3)
      if bad then return fail('EVKEY', o.id, bad) end
    else
      o.flags, o.new = {}, #o.events / 5
      for j = 1, o.new do o.flags[j] = true end
    end
  end
  if k == 'U' or k == 'A' then
    local nxt = {exists = true, live = true, ver = cur.ver, ea = cur.ea, v = cur.v, wt = false,
                 ca = cur.ca, ua = NOWN, grp = cur.grp}
    local eamode, ea = o.eamode, k == 'U' and o.ea or o.newea
    if o.creating then nxt.ver, nxt.ea, nxt.v = 1, o.ea ~= '' and o.ea or nil, 2
    elseif k == 'U' or o.new > 0 or o.force == '1' or (eamode == 'S' and ea ~= (cur.ea or ''))
        or (eamode == 'N' and cur.ea) then
      nxt.ver = cur.ver + 1
    end
    if eamode == 'S' then nxt.ea = ea elseif eamode == 'N' then nxt.ea = nil end
    after[o.doc] = nxt
  else
    after[o.doc] = nil
  end
end

-- ------------------------------------------------------------------ phase 2: writes
-- (a document's field changes are written once, by d_flush / d_flush_all: doc.lua)
D_DEFER = true
local results = {'OK'}
for _, o in ipairs(ops) do
  local k, cur, res = o.kind, o.cur, 1
  if o.skip then
    k = 'skip'
    res = 'S'
  elseif o.outcome then
    res = o.outcome
  end
  if o.claim and k ~= 'skip' then d_hset(o.home, 'grp', o.grp) end
  if k == 'C' or (k == 'F' and o.ca) or (k == 'A' and o.creating) then
    if k ~= 'F' then
      o.ca, o.ua, o.ec, o.ls, o.newver = NOW, NOW, '0', '0', '1'
    end
    local keep_t = nil  -- the log's time order (evlog.lua) outlives the document
    if k ~= 'F' or string.find(o.flags, 'r', 1, true) then
      d_del(o.doc, o.ev, o.ck, o.et, o.ek)
    else
      keep_t = d_hmget(o.doc, 'am', 'tu', 'ti')
      d_del(o.doc)
    end
    local f = {'v', '2', 'id', o.id, 'ver', o.newver, 'ca', o.ca, 'ua', o.ua, 'ec', o.ec,
               'ls', o.ls, 'st', o.st, 'wt', TOKEN, 'ds', o.ds, 'ms', o.ms}
    if o.ea ~= '' then f[#f + 1] = 'ea'; f[#f + 1] = o.ea end
    if o.pid ~= '' then f[#f + 1] = 'pid'; f[#f + 1] = o.pid end
    if o.grp ~= '' then f[#f + 1] = 'grp'; f[#f + 1] = o.grp end
    if keep_t and keep_t[1] then f[#f + 1] = 'am'; f[#f + 1] = keep_t[1] end
    if keep_t and keep_t[2] then f[#f + 1] = 'tu'; f[#f + 1] = keep_t[2] end
    if keep_t and keep_t[3] then f[#f + 1] = 'ti'; f[#f + 1] = keep_t[3] end
    for _, t in ipairs(o.tags) do f[#f + 1] = 't:' .. t; f[#f + 1] = '' end
    put_fields(o.doc, 'd:', o.dp, f)
    put_fields(o.doc, 'm:', o.mp, f)
    d_hsetl(o.doc, f)
    if IX ~= '' then
      local r = {o.newver, o.ca, o.ua, o.ea, o.st, o.pid, o.grp,
                 tonumber(o.ec) > 0 and '1' or '0'}
      for _, t in ipairs(o.tags) do r[#r + 1] = t end
      ix_set(IX, o.id, r, redis.call('HGET', IX .. 'r', o.id))
    end
  end
  if k == 'F' then
    if string.find(o.flags, 'd', 1, true) then
      d_del(o.doc, o.ev, o.ck, o.et, o.ek)
      if IX ~= '' then ix_del(IX, o.id) end
      res = {1, cur.ca, cur.ver}
    else
      if not o.ca and string.find(o.flags, 'r', 1, true) then
        redis.call('DEL', o.ev, o.ck, o.et, o.ek)
        d_hdel(o.doc, 'am', 'tu', 'ti')
      end
      -- removals first (they concern stored events), then the appended events
      local removed = false
      local function drop(lo, hi)
        local recs = redis.call('ZRANGEBYSCORE', o.ev, lo, hi)
        if #recs > 0 then
          ev_unindex(o.et, o.ek, recs, 1)
          redis.call('ZREMRANGEBYSCORE', o.ev, lo, hi)
          removed = true
        end
      end
      if o.trunc ~= '' then drop('(' .. o.trunc, '+inf') end
      if o.trim ~= '' then drop('-inf', '(' .. o.trim) end
      for _, s in ipairs(o.dseqs) do drop(s, s) end
      if #o.events > 0 then
        local t = d_hmget(o.doc, 'am', 'tu', 'ti')
        local am, tu, ti = tonumber(t[1]), t[2] == '1', t[3] == '1'
        for i = 1, #o.events, 6 do
          local e = o.events
          ev_add(o.ev, o.et, o.ek, tonumber(e[i]), e[i + 1], e[i + 2], e[i + 4], e[i + 5], ti)
          local at = tonumber(e[i + 3])
          if am and at < am then tu = true end
          if not am or at > am then am = at end
        end
        d_hset(o.doc, 'am', string.format('%d', am))
        if tu then d_hset(o.doc, 'tu', '1') end
      elseif removed then
        ev_settle(o.doc, o.ev)
      end
      if #o.cpdel > 0 then call_chunked('HDEL', o.ck, o.cpdel) end
      if #o.cps > 0 then
        local f = {}
        put_fields(o.ck, '', o.cps, f)
        call_chunked('HSET', o.ck, f)
      end
      expire(o, o.ca and o.ea or d_hget(o.doc, 'ea'))
    end
  elseif k == 'C' then
    expire(o, o.ea)
  elseif k == 'A' then
    local ea = o.creating and o.ea or (cur.ea or '')
    if o.eamode == 'S' then ea = o.newea elseif o.eamode == 'N' then ea = '' end
    local changed = o.creating or o.new > 0 or o.force == '1' or ea ~= (cur.ea or '')
    if changed then
      local h = d_hmget(o.doc, 'ec', 'ls', 'am', 'tu', 'ti')
      local seq, am, tu, ti = tonumber(h[2]) or 0, tonumber(h[3]), h[4] == '1', h[5] == '1'
      local j = 0
      for i = 1, #o.events, 5 do
        j = j + 1
        if o.flags[j] == true then
          seq = seq + 1
          o.flags[j] = seq
          local e = o.events
          ev_add(o.ev, o.et, o.ek, seq, e[i], e[i + 1], e[i + 3], e[i + 4], ti)
          local at = tonumber(e[i + 2])
          if am and at < am then tu = true end
          if not am or at > am then am = at end
        end
      end
      local f = {'ec', string.format('%d', (tonumber(h[1]) or 0) + o.new),
                 'ls', string.format('%d', seq), 'ua', NOW, 'wt', TOKEN}
      if am then f[#f + 1] = 'am'; f[#f + 1] = string.format('%d', am) end
      if tu then f[#f + 1] = 'tu'; f[#f + 1] = '1' end
      if ea ~= '' then f[#f + 1] = 'ea'; f[#f + 1] = ea else d_hdel(o.doc, 'ea') end
      d_hsetl(o.doc, f)
      if not o.creating then d_incr(o.doc, 'ver') end
      expire(o, ea)
      if IX ~= '' then ix_refresh(o, o.creating and 'scan' or 'keep') end
    end
    res = {d_str(o.doc), ev_flags_out(o.flags),
           o.creating and '1' or '0'}
  elseif k == 'D' then
    res = {(cur.exists and cur.live) and 1 or 0, cur.ca, cur.ver}
    if cur.exists then
      d_del(o.doc, o.ev, o.ck, o.et, o.ek)
      if IX ~= '' then ix_del(IX, o.id) end
    end
  elseif k == 'U' then
    if o.dmode == 'R' or o.mmode == 'R' or o.tmode == 'R' then
      local del = {}
      for _, f in ipairs(d_keys(o.doc)) do
        local p = string.sub(f, 1, 2)
        if (p == 'd:' and o.dmode == 'R') or (p == 'm:' and o.mmode == 'R')
            or (p == 't:' and o.tmode == 'R') then
          del[#del + 1] = f
        end
      end
      if #del > 0 then d_hdell(o.doc, del) end
    end
    local f = {'ua', NOW, 'wt', TOKEN, 'ds', o.ds, 'ms', o.ms}
    put_fields(o.doc, 'd:', o.dp, f)
    put_fields(o.doc, 'm:', o.mp, f)
    if o.st ~= '' then f[#f + 1] = 'st'; f[#f + 1] = o.st end
    if o.pidmode == 'S' then f[#f + 1] = 'pid'; f[#f + 1] = o.pid end
    for _, t in ipairs(o.tadd) do f[#f + 1] = 't:' .. t; f[#f + 1] = '' end
    if o.eamode == 'S' then f[#f + 1] = 'ea'; f[#f + 1] = o.ea end
    d_hsetl(o.doc, f)
    local del = {}
    for _, key in ipairs(o.drem) do del[#del + 1] = 'd:' .. key end
    for _, key in ipairs(o.mrem) do del[#del + 1] = 'm:' .. key end
    for _, t in ipairs(o.trem) do del[#del + 1] = 't:' .. t end
    if o.pidmode == 'N' then del[#del + 1] = 'pid' end
    if o.eamode == 'N' then del[#del + 1] = 'ea' end
    if #del > 0 then d_hdell(o.doc, del) end
    d_incr(o.doc, 'ver')
    if o.eamode == 'S' then expire(o, o.ea) elseif o.eamode == 'N' then expire(o, nil) end
    if IX ~= '' then ix_refresh(o, o.tmode == '' and 'keep' or 'scan') end
    res = d_str(o.doc)
  elseif k == 'T' then
    d_incr(o.doc, 'ver')
    d_hset(o.doc, 'ua', NOW, 'wt', TOKEN)
    if o.eamode == 'S' then
      d_hset(o.doc, 'ea', o.ea)
      expire(o, o.ea)
    end
    if IX ~= '' then ix_refresh(o, 'keep') end
    res = d_str(o.doc)
  elseif k == 'R' or k == 'P' or k == 'X' or k == 'E' then
    -- trim, pop, truncate, delete events: no write when nothing is removed
    local recs = {}
    if k == 'P' then
      local got = redis.call('ZPOPMAX', o.ev, o.n)
      for i = 1, #got, 2 do recs[#recs + 1] = got[i] end
    elseif k == 'X' then
      local lo = '(' .. string.format('%d', o.after)
      recs = redis.call('ZRANGEBYSCORE', o.ev, lo, '+inf')
      if #recs > 0 then redis.call('ZREMRANGEBYSCORE', o.ev, lo, '+inf') end
    elseif k == 'R' then
      local n = redis.call('ZCARD', o.ev) - o.keep
      if n > 0 then
        recs = redis.call('ZRANGE', o.ev, 0, n - 1)
        redis.call('ZREMRANGEBYRANK', o.ev, 0, n - 1)
      end
    else
      local seqs = {}
      for _, s in ipairs(o.seqs) do seqs[#seqs + 1] = s end
      for _, key in ipairs(o.keys) do
        local stored = redis.call('HGET', o.ek, key)
        if stored then seqs[#seqs + 1] = string.match(stored, '^(%d+)') end
      end
      local gone = {}
      for _, s in ipairs(seqs) do
        if not gone[s] then
          gone[s] = true
          local rec = redis.call('ZRANGEBYSCORE', o.ev, s, s)[1]
          if rec then
            recs[#recs + 1] = rec
            redis.call('ZREM', o.ev, rec)
          end
        end
      end
    end
    if #recs > 0 then
      ev_unindex(o.et, o.ek, recs, 1)
      d_hset(o.doc, 'ec', redis.call('ZCARD', o.ev), 'ua', NOW, 'wt', TOKEN)
      d_incr(o.doc, 'ver')
      ev_settle(o.doc, o.ev)
      if IX ~= '' then ix_refresh(o, 'keep') end
    end
    res = {d_str(o.doc), #recs}
    if k == 'P' then
      for _, rec in ipairs(recs) do res[#res + 1] = rec end
    end
  end
  results[#results + 1] = res
end
d_flush_all()
return results
