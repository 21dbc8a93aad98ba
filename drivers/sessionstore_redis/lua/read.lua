-- Read session documents: a layout-3 document is one string (doc.lua), sent as stored;
-- a layout-2 hash is sent as one string "field\0value\0field\0value..." (NUL never
-- occurs in a field or a value: JSON escapes it, ids, tags and headers exclude it), so
-- the client parses one bulk string per document either way.
-- KEYS: doc keys; ARGV: more doc keys (on Cluster, documents of other slots of the same
-- node, which a script without flags may read; a key of another node answers '\1').
-- Reply: per key, KEYS then ARGV, a string ('' = no such key, '\1' = neither a string
-- nor a hash): for one key that string, else {sizes, strings}: the strings concatenated
-- (in pieces past 8 KB, pieces.lua) and their lengths, comma-separated (a few reply
-- elements for a page: the client's pure-Python reply parser costs microseconds per
-- element).
local function read(key)
  local s = redis.pcall('GET', key)
  if type(s) ~= 'table' then return s or '' end
  local fields = redis.pcall('HGETALL', key)
  if fields.err then return '\1' end
  return table.concat(fields, '\0')
end
if #KEYS == 1 and #ARGV == 0 then return read(KEYS[1]) end  -- one document (get_session)
local out = {}
for _, key in ipairs(KEYS) do out[#out + 1] = read(key) end
for _, key in ipairs(ARGV) do out[#out + 1] = read(key) end
if #out == 1 then return out[1] end
local sizes = {}
for i, s in ipairs(out) do sizes[i] = #s end
return {csv(sizes), pieces(out, sizes)}
