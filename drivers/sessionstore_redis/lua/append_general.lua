-- The rest of append.lua (its arguments and reply are described there), loaded after
-- ixadd.lua and evlog.lua: an append whose client holds no current copy of the document (the document
-- is read: version check, expiry, layout), or with keyed events (checked against the key
-- index; written only if new).
if index_in_full then
  -- the short path found no index record of the session (lost or removed): index it in
  -- full, from the record the client made of its copy, which is the document
  local rec, r, p = ARGV[9], {}, 1
  while true do
    local q = string.find(rec, SEP, p, true)
    if not q then break end
    r[#r + 1] = string.sub(rec, p, q - 1)
    p = q + 1
  end
  r[#r + 1] = string.sub(rec, p)
  ix_add(IX, ID, r)
  return tonumber(string.sub(ARGV[11], 1, 20))
end

local head = hdr and d_head(doc)  -- a layout-3 document's header, else doc.lua reads it
w = head and {head.wt, head.am, '2', head.ti} or d_hmget(doc, 'wt', 'am', 'v', 'ti')
local KEYED, NUMBERED = MODE == 'K', MODE == 'N'
local FIRST, STEP = NUMBERED and 12 or 14, NUMBERED and 3 or 5  -- the first event, arguments per event
local RECORD = '^[^%z]*%z([^%z]*)%z([^%z]*)%z([^%z]*%z[^%z]*%z[^%z]*%z[^%z]*)%z[^%z]*(.*)$'

-- numbers as integers: tostring would print a version near 2^62 as 4.6116860184274e+18
local function str(x) if type(x) == 'number' then return string.format('%d', x) end return tostring(x or '') end
local function int(x) return string.format('%.0f', x) end
local function fail(code, a, b) return {'!', code, ID, str(a), str(b)} end
local ver, ec, ls, expire_at
if current and not NUMBERED then
  -- keyed events and the client's copy is the document: 11-13 are its state
  ver, ec, ls = ARGV[11], ARGV[12], ARGV[13]
  if ARGV[8] ~= '' then expire_at = ARGV[8] end
else
  local h = d_hmget(doc, 'ver', 'ea', 'wt', 'grp', 'v', 'ec', 'ls')
  if not h[1] then
    if h[4] then return fail('PTR', h[4]) end
    if redis.call('EXISTS', doc) == 1 then return fail('CORRUPT') end
    return fail('NOTFOUND')
  end
  local format = tonumber(h[5])
  ver = tonumber(h[1])
  if not ver or not format then return fail('CORRUPT') end
  if format > 2 then return fail('FORMAT') end
  local expect = tonumber(ARGV[6])
  if expect and ver == expect + 1 and h[3] == TOKEN then
    return {'DONE', d_str(doc)}
  end
  if h[2] and tonumber(h[2]) <= tonumber(NOW) then return fail('NOTFOUND') end
  if expect and ver ~= expect then return fail('CONFLICT', expect, ver) end
  if format < 2 then
    if not ev_upgrade(doc, ev, et) then return fail('CORRUPT') end
    w = d_hmget(doc, 'wt', 'am', 'v', 'ti')
    h[6] = d_hget(doc, 'ec')
  end
  current = KNOWN ~= '' and h[3] == KNOWN
  ec, ls = tonumber(h[6]) or 0, tonumber(h[7]) or 0
  if h[2] then expire_at = int(tonumber(h[2]) + tonumber(ARGV[1])) end
end

local TI = w[4] == '1'  -- the type index is kept (evlog.lua)
-- keyed events: one already stored with the same content is not written again; with
-- other content the call fails before anything is written
local flags, new = {}, 0
if KEYED then
  local bad
  flags, new, bad = ev_dedupe(ev, ek, ARGV, FIRST, STEP, 3)
  if bad then return fail('EVKEY', bad) end
  if new == 0 then  -- every event is stored already: nothing to write
    if current then return {'K', tonumber(ver), ev_flags_out(flags)} end
    return {'K', d_str(doc), ev_flags_out(flags)}
  end
else
  new = (#ARGV - FIRST + 1) / STEP
end

ver, ec, ls = tonumber(ver), tonumber(ec), tonumber(ls)
local am, tu = tonumber(w[2]), false
local pred = NUMBERED and tonumber(string.sub(ARGV[11], 61, 80)) - new  -- the seq the client numbered after
local seq, j = ls, 0
for i = FIRST, #ARGV, STEP do
  j = j + 1
  if not KEYED or flags[j] == true then
    seq = seq + 1
    if not NUMBERED then
      ev_add(ev, et, ek, seq, ARGV[i], ARGV[i + 1], ARGV[i + 3], ARGV[i + 4], TI)
    elseif pred == ls and not TI then  -- numbered by the client, rightly
      redis.call('ZADD', ev, ARGV[i], ARGV[i + 1])
    else  -- renumbered (numbered from another seq), or its type index entry made here
      local rec = ARGV[i + 1]
      local t = string.find(rec, ',"t":', 1, true) + 5
      local ty = string.sub(rec, t, string.find(rec, ',"a":', t, true) - 1)
      ev_add(ev, et, ek, seq, string.sub(rec, t - 4), ty, '', '', TI)
    end
    if KEYED then flags[j] = seq end
    local at = tonumber(ARGV[i + 2])
    if am and at < am then tu = true end
    if not am or at > am then am = at end
  end
end
local nv = int(ver + 1)
if hdr then  -- a layout-3 document: the header in place (the parse read above dropped)
  redis.call('SETRANGE', doc, '1', d_pad(nv) .. d_pad(NOW) .. d_pad(int(ec + new))
    .. d_pad(int(seq)) .. d_pad(int(am)) .. ((tu or string.byte(hdr, 102) == 49) and '1' or '0')
    .. TOKEN .. string.rep(' ', 32 - #TOKEN))
  D_DOCS[doc] = nil
elseif tu then
  d_hset(doc, 'ver', nv, 'ec', int(ec + new), 'ls', int(seq), 'ua', NOW, 'wt', TOKEN, 'am', int(am), 'tu', '1')
else
  d_hset(doc, 'ver', nv, 'ec', int(ec + new), 'ls', int(seq), 'ua', NOW, 'wt', TOKEN, 'am', int(am))
end
-- after the writes: PEXPIREAT of a key that does not exist yet (a first append) is a no-op
if expire_at then
  redis.call('PEXPIREAT', ev, expire_at)
  redis.call('PEXPIREAT', et, expire_at)
  if KEYED then redis.call('PEXPIREAT', ek, expire_at) end
end

if IX ~= '' then
  local full = false  -- not indexed yet (an index entry lost or removed): index in full
  if current and ARGV[9] ~= '' then
    -- the client made the record from its copy, which is this document: no read. A record
    -- that was not there (HSET added a field) means the session was not indexed.
    if redis.call('HSET', IX .. 'r', ID, ARGV[9]) == 1 then
      full = true
    else
      redis.call('ZADD', IX .. 'u', NOW, ID)
      ix_touch(IX, ID, NOW, ARGV[9])
    end
  else
    local old = redis.call('HGET', IX .. 'r', ID)
    local ca, ua, mid, tags
    if old then  -- ver, ca, ua, then ea..grp kept, ev, then the tags (one match, no split)
      ca, ua, mid, tags = string.match(old, RECORD)
    end
    if ca then  -- only the version, updated_at and "has events" change
      if ua ~= NOW then
        redis.call('ZADD', IX .. 'u', NOW, ID)
        ix_touch(IX, ID, NOW, old)
      end
      redis.call('HSET', IX .. 'r', ID, nv .. SEP .. ca .. SEP .. NOW .. SEP .. mid .. SEP .. '1' .. tags)
    else  -- missing or malformed
      full = true
    end
  end
  if full then
    local f = d_hmget(doc, 'ca', 'ea', 'st', 'pid', 'grp')
    local r = {nv, f[1], NOW, f[2] or '', f[3], f[4] or '', f[5] or '', '1'}
    for _, k in ipairs(d_keys(doc)) do
      if string.sub(k, 1, 2) == 't:' then r[#r + 1] = string.sub(k, 3) end
    end
    ix_add(IX, ID, r)
  end
end
local out
if current then out = tonumber(nv) else out = d_str(doc) end
if KEYED then return {'K', out, ev_flags_out(flags)} end
return out
