-- The rest of the document helpers (dochead.lua has the layout and the fixed-width
-- fields): loaded after a script's short path where it has one (append.lua).
local D_DOCS = {}  -- key -> the document read or written by this call (false: none)

-- x + 1 of a non-negative decimal string, exactly (a version may exceed 2^53)
local function d_inc(x)
  if string.byte(x, 1) == 45 then return string.format('%d', tonumber(x) + 1) end
  local i = #x
  while i > 0 and string.byte(x, i) == 57 do i = i - 1 end
  if i == 0 then return '1' .. string.rep('0', #x) end
  return string.sub(x, 1, i - 1) .. string.char(string.byte(x, i) + 1) .. string.rep('0', #x - i)
end

-- the members of a stored JSON object: names (prefix .. key json) appended to o, values into f
local function d_members(s, prefix, f, o)
  if #s <= 2 then return s == '{}' end
  local p, n = 2, #s - 1
  while p <= n do
    local q = string.find(s, '\n', p, true)
    local piece = string.sub(s, p, (q or n + 1) - 1)
    if string.byte(piece, 1) == 44 then piece = string.sub(piece, 2) end
    local t = string.find(piece, '\t', 1, true)
    if not t then return false end
    local name = prefix .. string.sub(piece, 1, t - 1)
    o[#o + 1] = name
    f[name] = string.sub(piece, t + 2)
    if not q then break end
    p = q + 1
  end
  return true
end

-- a layout-3 string as {f = fields, o = order of the tag, data and metadata fields};
-- nil when malformed, {f = {v = '9', ver = '0'}} for a newer layout
local function d_parse(s)
  local b = string.byte(s, 1)
  if b ~= 3 then
    if b and b > 3 and b < 32 then return {f = {v = '9', ver = '0'}, o = {}} end
    return nil
  end
  if string.byte(s, 2) == 71 then return {f = {grp = string.sub(s, 3)}, o = {}, s = s} end
  if #s < D_HDR then return nil end
  local f = {v = '2', ver = d_int(string.sub(s, 2, 21)), ua = d_int(string.sub(s, 22, 41)),
             ec = d_int(string.sub(s, 42, 61)), ls = d_int(string.sub(s, 62, 81)),
             am = d_int(string.sub(s, 82, 101)) or nil, ea = d_int(string.sub(s, 135, 154)) or nil}
  if not (f.ver and f.ua and f.ec and f.ls) or (f.am == nil and string.byte(s, 82) ~= 32)
      or (f.ea == nil and string.byte(s, 135) ~= 32) then
    return nil
  end
  if string.byte(s, 102) == 49 then f.tu = '1' end
  if string.byte(s, 155) == 49 then f.ti = '1' end
  local wt = string.sub(s, 103, 134)
  local sp = string.find(wt, ' ', 1, true)
  if sp then wt = string.sub(wt, 1, sp - 1) end
  f.wt = wt
  local parts, p = {}, D_HDR + 1
  while true do
    local q = string.find(s, '\0', p, true)
    if not q then parts[#parts + 1] = string.sub(s, p); break end
    parts[#parts + 1] = string.sub(s, p, q - 1)
    p = q + 1
  end
  local nt = tonumber(parts[8])
  if not nt or #parts ~= 10 + nt then return nil end
  f.id, f.ca, f.st, f.ds, f.ms = parts[1], parts[2], parts[3], parts[6], parts[7]
  if parts[4] ~= '' then f.pid = parts[4] end
  if parts[5] ~= '' then f.grp = parts[5] end
  local o = {}
  for i = 9, 8 + nt do
    o[#o + 1] = 't:' .. parts[i]
    f['t:' .. parts[i]] = ''
  end
  if not d_members(parts[9 + nt], 'd:', f, o) or not d_members(parts[10 + nt], 'm:', f, o) then
    return nil
  end
  return {f = f, o = o, s = s}
end

-- the document at key (cached for the call): {f, o[, s the stored string][, hash]},
-- false when there is none; a malformed one has no fields (EXISTS tells it is there)
local function d_get(key)
  local d = D_DOCS[key]
  if d ~= nil then return d end
  local s = redis.pcall('GET', key)
  if type(s) == 'table' and s.err then
    local t = redis.pcall('HGETALL', key)
    if t.err then
      error(t.err, 0)  -- neither a string nor a hash: the call fails with WRONGTYPE (a string:
      -- Redis 6.2's error handler cannot take the table; 7 replies the same to both)
    else
      d = {f = {}, o = {}, hash = true}
      for i = 1, #t, 2 do
        local n = t[i]
        d.f[n] = t[i + 1]
        local p = string.sub(n, 1, 2)
        if p == 't:' or p == 'd:' or p == 'm:' then d.o[#d.o + 1] = n end
      end
    end
  elseif not s then
    d = false
  else
    d = d_parse(s) or {f = {}, o = {}, bad = true}
  end
  D_DOCS[key] = d
  return d
end

local function d_hmget(key, ...)
  local d, out = d_get(key), {}
  for i, n in ipairs({...}) do out[i] = d and d.f[n] or false end
  return out
end

local function d_hget(key, n)
  local d = d_get(key)
  return d and d.f[n] or false
end

local function d_object(list)
  if #list == 0 then return '{}' end
  return '{' .. table.concat(list, '\n,') .. '}'
end

-- the layout-3 string of fields f (order o)
local function d_build(f, o)
  if not f.ver then return '\3G' .. (f.grp or '') end
  local tags, data, meta, seen = {}, {}, {}, {}
  for _, n in ipairs(o) do
    local v = f[n]
    if v and not seen[n] then
      seen[n] = true
      local p, rest = string.sub(n, 1, 2), string.sub(n, 3)
      if p == 't:' then tags[#tags + 1] = rest
      elseif p == 'd:' then data[#data + 1] = rest .. '\t:' .. v
      else meta[#meta + 1] = rest .. '\t:' .. v
      end
    end
  end
  local wt = f.wt or ''
  local out = {'\3', d_pad(f.ver), d_pad(f.ua), d_pad(f.ec or '0'), d_pad(f.ls or '0'),
               f.am and d_pad(f.am) or D_BLANK, f.tu == '1' and '1' or '0',
               wt .. string.rep(' ', 32 - #wt), f.ea and d_pad(f.ea) or D_BLANK,
               f.ti == '1' and '1' or '0',
               f.id, '\0', f.ca, '\0', f.st, '\0', f.pid or '', '\0', f.grp or '', '\0',
               f.ds or '0', '\0', f.ms or '0', '\0', string.format('%d', #tags)}
  for _, t in ipairs(tags) do out[#out + 1] = '\0'; out[#out + 1] = t end
  out[#out + 1] = '\0'
  out[#out + 1] = d_object(data)
  out[#out + 1] = '\0'
  out[#out + 1] = d_object(meta)
  return table.concat(out)
end

-- A script may defer its writes (D_DEFER, write.lua's phase 2: several field changes of
-- one document, one SET): a changed document is then written by d_flush, which d_str
-- and write.lua's expire() call first, and d_flush_all before the script returns.
local D_DEFER, D_DIRTY = false, {}

local function d_flush(key)
  local d = D_DOCS[key]
  if d and d.dirty then
    d.dirty = nil
    d.s = d_build(d.f, d.o)
    d.hash = nil
    redis.call('SET', key, d.s, 'KEEPTTL')
  end
end

local function d_flush_all()
  for _, key in ipairs(D_DIRTY) do d_flush(key) end
  D_DIRTY = {}
end

-- store d at key: a string (the TTL kept), or a layout-1 hash's changed fields
local function d_put(key, d, changed, removed)
  if d.hash and d.f.ver and d.f.v ~= '2' then
    for i = 1, #(changed or {}), 1000 do
      redis.call('HSET', key, unpack(changed, i, math.min(i + 999, #changed)))
    end
    for i = 1, #(removed or {}), 1000 do
      redis.call('HDEL', key, unpack(removed, i, math.min(i + 999, #removed)))
    end
    return
  end
  if D_DEFER then
    if not d.dirty then D_DIRTY[#D_DIRTY + 1] = key end
    d.dirty, d.s = true, nil
    return
  end
  d.s = d_build(d.f, d.o)
  d.hash = nil
  redis.call('SET', key, d.s, 'KEEPTTL')
end

local function d_hsetl(key, a)
  local d = d_get(key)
  if not d then
    d = {f = {}, o = {}}
    D_DOCS[key] = d
  end
  for i = 1, #a, 2 do
    local n, v = a[i], a[i + 1]
    if type(v) == 'number' then v = string.format('%d', v) end
    a[i + 1] = v
    if d.f[n] == nil then
      local p = string.sub(n, 1, 2)
      if p == 't:' or p == 'd:' or p == 'm:' then d.o[#d.o + 1] = n end
    end
    d.f[n] = v
  end
  d_put(key, d, a, nil)
end

local function d_hset(key, ...) d_hsetl(key, {...}) end

local function d_hdell(key, a)
  local d = d_get(key)
  if not d then return end
  for _, n in ipairs(a) do d.f[n] = nil end
  d_put(key, d, nil, a)
end

local function d_hdel(key, ...) d_hdell(key, {...}) end

local function d_incr(key, n)
  local d = d_get(key)
  d.f[n] = d_inc(d.f[n])
  d_put(key, d, {n, d.f[n]}, nil)
end

local function d_keys(key)
  local d, out, seen = d_get(key), {}, {}
  if not d then return out end
  for _, n in ipairs(d.o) do
    if d.f[n] and not seen[n] then seen[n] = true; out[#out + 1] = n end
  end
  return out
end

-- the document as a reply sends it: the stored string, or a layout-2 hash's fields and
-- values NUL-separated (read.lua); '' for none
local function d_str(key)
  d_flush(key)
  local d = d_get(key)
  if not d then return '' end
  if d.s then return d.s end
  if d.bad then return '\1' end
  local out = {}
  for n, v in pairs(d.f) do out[#out + 1] = n; out[#out + 1] = v end
  return table.concat(out, '\0')
end

local function d_del(...)
  redis.call('DEL', ...)
  for _, k in ipairs({...}) do D_DOCS[k] = false end
end
