-- Byte order of strings, for the scripts that sort or compare ids and tags (write.lua,
-- walk.lua, walkn.lua): a < b, byte by byte (Lua's string '<' follows the locale's
-- collation; the client and Redis's sorted sets order by bytes).
local function blt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
