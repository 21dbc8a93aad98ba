-- The session document, layout 3 (docs/redis.md): one string per session,
--   '\3', a fixed-width header: ver, ua, ec, ls, am (20 characters each: zero-padded
--   decimals, am blank when no event was appended), tu (1: '1' or '0'), wt (32: the last
--   write token, space-padded), ea (20, blank: no expiry), ti (1),
--   then NUL-separated: id, ca, st, pid, grp, ds, ms, the number of tags, the tags (raw;
--   NUL never occurs in one), data, metadata.
-- data and metadata are JSON objects whose members are written '"key"\t:value' and
-- separated by '\n,' (JSON whitespace, which compact JSON never holds outside strings and
-- escapes inside them): the client decodes each with one orjson.loads, and a script
-- finds a member's key and value with plain finds (no JSON is ever parsed here).
-- A grouped session's stub is '\3G<group>'. A first byte from 4 to 31 is a newer layout.
-- Layout 2 (a hash of fields) is still read: the helpers below present either layout as
-- the hash layout 2 had (fields v, id, ver, ..., 't:<tag>', 'd:<json key>', 'm:<json
-- key>'), and the first write of a layout-2 document stores it as a string (a layout-1
-- one, v = '1', stays a hash until its event log is converted, evlog.lua).
local D_HDR = 155  -- header length, '\3' included
local D_BLANK = string.rep(' ', 20)
local D_ZERO = string.rep('0', 20)

-- a fixed-width decimal as its shortest text ('-' kept), false when blank
local function d_int(s)
  if string.byte(s, 1) == 32 then return false end
  local sign, digits = string.match(s, '^(%-?)0*(%d+)$')
  if not digits then return nil end
  return sign .. digits
end

local function d_pad(x)
  if type(x) == 'number' then x = string.format('%d', x) end
  if string.byte(x, 1) == 45 then
    return '-' .. string.rep('0', 19 - #x + 1) .. string.sub(x, 2)
  end
  return string.rep('0', 20 - #x) .. x
end


-- The fixed header of a layout-3 document at key, read with one GETRANGE (no parse of
-- the rest): {ver, ua, ec, ls, am, tu, wt, ea, ti} (am, ea false when blank; tu, ti '1'
-- or false) and the header string; nil for anything else (none, a stub, a layout-2
-- hash, a newer layout, a malformed header), which the caller reads through doc.lua.
local function d_head(key)
  local s = redis.pcall('GETRANGE', key, 0, D_HDR - 1)
  if type(s) ~= 'string' or #s ~= D_HDR or string.byte(s, 1) ~= 3 then return nil end
  local ver, ua = d_int(string.sub(s, 2, 21)), d_int(string.sub(s, 22, 41))
  if not ver or not ua then return nil end
  local wt = string.sub(s, 103, 134)
  local sp = string.find(wt, ' ', 1, true)
  if sp then wt = string.sub(wt, 1, sp - 1) end
  return {ver = ver, ua = ua, am = d_int(string.sub(s, 82, 101)), wt = wt,
          tu = string.byte(s, 102) == 49 and '1' or false,
          ea = d_int(string.sub(s, 135, 154)), ti = string.byte(s, 155) == 49 and '1' or false}, s
end
