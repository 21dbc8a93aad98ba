-- Read session documents, each as one string "field\0value\0field\0value..." (NUL never
-- occurs in a field or a value: JSON escapes it, ids, tags and headers exclude it), so
-- the client parses one bulk string per document instead of two per field.
-- KEYS: doc keys. Reply: one string per key ('' = no such key, '\1' = not a hash).
local out = {}
for i, key in ipairs(KEYS) do
  local fields = redis.pcall('HGETALL', key)
  if type(fields) == 'table' and fields.err then
    out[i] = '\1'
  else
    out[i] = table.concat(fields, '\0')
  end
end
return out
