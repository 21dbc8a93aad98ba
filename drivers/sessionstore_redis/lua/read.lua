-- Read session documents, each as one string "field\0value\0field\0value..." (NUL never
-- occurs in a field or a value: JSON escapes it, ids, tags and headers exclude it), so
-- the client parses one bulk string per document instead of two per field.
-- KEYS: doc keys; ARGV: more doc keys (on Cluster, documents of other slots of the same
-- node, which a script without flags may read; a key of another node answers '\1').
-- Reply: per key, KEYS then ARGV, a string ('' = no such key, '\1' = not a hash): for one
-- key that string, else {sizes, strings}: the strings concatenated (in pieces past 8 KB,
-- pieces.lua) and their lengths, comma-separated (a few reply elements for a page: the
-- client's pure-Python reply parser costs microseconds per element).
if #KEYS == 1 and #ARGV == 0 then  -- one document (get_session): no closure, no table
  local fields = redis.pcall('HGETALL', KEYS[1])
  if type(fields) == 'table' and fields.err then return '\1' end
  return table.concat(fields, '\0')
end
local out = {}
local function read(key)
  local fields = redis.pcall('HGETALL', key)
  if type(fields) == 'table' and fields.err then
    out[#out + 1] = '\1'
  else
    out[#out + 1] = table.concat(fields, '\0')
  end
end
for _, key in ipairs(KEYS) do read(key) end
for _, key in ipairs(ARGV) do read(key) end
if #out == 1 then return out[1] end
local sizes = {}
for i, s in ipairs(out) do sizes[i] = #s end
return {csv(sizes), pieces(out, sizes)}
