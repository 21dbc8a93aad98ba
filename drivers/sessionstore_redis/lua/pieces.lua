-- Helpers of the scripts that answer many strings as one frame (walk.lua, read.lua).
--
-- pieces(parts, sizes): the strings `parts` (their lengths in `sizes`) concatenated in
-- pieces of at most 8,000 bytes, as a list the client joins; the one string when there is
-- one piece or none (a list costs the client's reply parser one more element, and a
-- Cluster page has 16 walks of a few rows each). Redis's Lua hashes every byte of each
-- string it creates, and table.concat builds a result longer than its 8 KB buffer
-- through intermediate strings, each hashed in full: a page of 101 documents (~45 KB)
-- cost ~1.7M redis-server instructions as one string, ~0.5M in pieces. A part longer
-- than a piece is a piece of its own, not copied.
local function pieces(parts, sizes)
  local out, from, len = {}, 1, 0
  for i = 1, #parts do
    local n = sizes[i]
    if len + n > 8000 and i > from then
      out[#out + 1] = (i - 1 == from) and parts[from] or table.concat(parts, '', from, i - 1)
      from, len = i, 0
    end
    len = len + n
  end
  if from < #parts then
    out[#out + 1] = table.concat(parts, '', from, #parts)
  elseif from == #parts then
    out[#out + 1] = parts[from]
  end
  if #out <= 1 then return out[1] or '' end
  return out
end

-- The numbers `sizes` as 'n1,n2,...' by string.format's '%d' (table.concat turns each
-- number into a string with '%.14g', a float formatting several times dearer).
local function csv(sizes)
  local out, n = {}, #sizes
  for i = 1, n, 100 do
    local last = math.min(n, i + 99)
    out[#out + 1] = string.format(string.rep('%d,', last - i) .. '%d', unpack(sizes, i, last))
  end
  return table.concat(out, ',')
end
