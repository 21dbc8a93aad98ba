-- lua/walk.lua on several index shards of one Cluster node in one call (a listing asks
-- all 16 shards: one call per node instead of one per shard). The walk's source is
-- wrapped above this as `local function walk(KEYS, ARGV)` (``_scripts.py``), so each
-- shard runs exactly what a call of walk.lua runs.
-- KEYS: the first shard's walk keys (they route the call); ARGV[1] shards n, ARGV[2]
-- keys a shard k, then the other shards' keys (k each, in order; a script without
-- flags may read any key of its node, as read.lua does: a key of another node, after
-- a slot moved, fails the call and the client asks those shards one by one), then the
-- walk's arguments (the same for every shard).
-- Reply: {heads, sizes, rows}: per shard 'done,last_score,count,#last_member,#rows'
-- (';'-separated), per shard its walk's sizes (';'-separated), and per shard its last
-- member followed by its walk's rows, concatenated in pieces (pieces.lua: a string, or
-- a list the client joins): three reply elements a node (a few more past 8 KB).
local n, k = tonumber(ARGV[1]), tonumber(ARGV[2])
local args = {unpack(ARGV, 3 + (n - 1) * k)}
local heads, sizes, parts, lens = {}, {}, {}, {}
local function part(p)
  parts[#parts + 1] = p
  lens[#lens + 1] = #p
  return #p
end
for s = 1, n do
  local keys = KEYS
  if s > 1 then keys = {unpack(ARGV, 3 + (s - 2) * k, 2 + (s - 1) * k)} end
  local r = walk(keys, args)
  part(r[3])
  local got = 0
  if type(r[6]) == 'table' then
    for _, p in ipairs(r[6]) do got = got + part(p) end
  elseif r[6] then
    got = part(r[6])
  end
  -- '%d', not '..': Lua turns a number into a string with '%.14g', several times dearer
  heads[s] = string.format('%s,%s,%d,%d,%d', r[1], r[2], r[4], #r[3], got)
  sizes[s] = r[5] or ''
end
return {table.concat(heads, ';'), table.concat(sizes, ';'), pieces(parts, lens)}
