-- lua/walk.lua on several index shards of one Cluster node in one call (a listing asks
-- all 16 shards: one call per node instead of one per shard). The walk's source is
-- wrapped above this as `local function walk(KEYS, ARGV)` (``_scripts.py``), so each
-- shard runs exactly what a call of walk.lua runs.
-- KEYS: the first shard's walk keys (they route the call); ARGV[1] shards n, ARGV[2]
-- keys a shard k, ARGV[3] the node's share of the page (0: none, see below), then the
-- other shards' keys (k each, in order; a script without flags may read any key of its
-- node, as read.lua does: a key of another node, after a slot moved, fails the call and
-- the client asks those shards one by one), then the walk's arguments (the same for
-- every shard).
-- The node's share (key layout 4, where each shard's sessions share its slot and the
-- walk's documents prefix is '~'): the shards are walked without their documents and
-- with their scores, and only the node's first SHARE rows (all its shards' runs merged in
-- the walk's order) get their documents, read here (docread.lua); a row without one is
-- sent with the size '-' in place of its document's, and the client reads it itself (a
-- node holding more than its share of the page: rare, the share has three standard
-- deviations of margin). Sending every shard's rows' documents would send ~2.6 pages of
-- documents for one.
-- Reply: {heads, sizes, rows}: per shard 'done,last_score,count,#last_member,#rows'
-- (';'-separated), per shard its walk's sizes (';'-separated), and per shard its last
-- member followed by its walk's rows, concatenated in pieces (pieces.lua: a string, or
-- a list the client joins): three reply elements a node (a few more past 8 KB).
local n, k, SHARE = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local args = {unpack(ARGV, 4 + (n - 1) * k)}
local DESC = args[2] == '1'
if SHARE > 0 then
  args[#args - 1] = ''  -- documents: read below, for the node's share only
  args[#args] = '1'  -- scores: the merge below compares them
end
local heads, sizes, parts, lens = {}, {}, {}, {}
local function part(p)
  parts[#parts + 1] = p
  lens[#lens + 1] = #p
  return #p
end
local function blob(r)
  if type(r[6]) == 'table' then return table.concat(r[6]) end
  return r[6] or ''
end
-- row a (score, member) comes before row b in the walk's order
local function before(a, b)
  if a[1] ~= b[1] then
    if DESC then return a[1] > b[1] end
    return a[1] < b[1]
  end
  if DESC then return blt(b[2], a[2]) end
  return blt(a[2], b[2])
end
local replies, keysof, runs = {}, {}, {}
for s = 1, n do
  local keys = KEYS
  if s > 1 then keys = {unpack(ARGV, 4 + (s - 2) * k, 3 + (s - 1) * k)} end
  keysof[s] = keys
  replies[s] = walk(keys, args)
  if SHARE > 0 then
    -- the shard's rows 'id\1score\1record' as {score, id, row}
    local run, text, at = {}, blob(replies[s]), 1
    local csv = replies[s][5] or ''
    for size in string.gmatch(csv, '%d+') do
      local row = string.sub(text, at, at + tonumber(size) - 1)
      at = at + tonumber(size)
      local i = string.find(row, '\1', 1, true)
      local j = string.find(row, '\1', i + 1, true)
      run[#run + 1] = {tonumber(string.sub(row, i + 1, j - 1)), string.sub(row, 1, i - 1), row, j}
    end
    runs[s] = run
  end
end
local chosen = {}  -- chosen[s][i]: row i of shard s gets its document
if SHARE > 0 then
  local pos = {}
  for s = 1, n do pos[s] = 1; chosen[s] = {} end
  for _ = 1, SHARE do
    local best = nil
    for s = 1, n do
      local row = runs[s][pos[s]]
      if row and (best == nil or before(row, runs[best][pos[best]])) then best = s end
    end
    if best == nil then break end
    chosen[best][pos[best]] = true
    pos[best] = pos[best] + 1
  end
end
for s = 1, n do
  local r = replies[s]
  part(r[3])
  local got = 0
  local size_list = r[5] or ''
  if SHARE > 0 then
    local docp = string.sub(keysof[s][1], 1, -2)
    local out_sizes = {}
    for i, row in ipairs(runs[s]) do
      got = got + part(row[3])
      out_sizes[#out_sizes + 1] = string.format('%d', #row[3])
      if chosen[s][i] then
        local doc = read_doc(docp, row[2], string.sub(row[3], row[4] + 1))
        got = got + part(doc)
        out_sizes[#out_sizes + 1] = string.format('%d', #doc)
      else
        out_sizes[#out_sizes + 1] = '-'
      end
    end
    size_list = table.concat(out_sizes, ',')
  elseif type(r[6]) == 'table' then
    for _, p in ipairs(r[6]) do got = got + part(p) end
  elseif r[6] then
    got = part(r[6])
  end
  -- '%d', not '..': Lua turns a number into a string with '%.14g', several times dearer
  heads[s] = string.format('%s,%s,%d,%d,%d', r[1], r[2], r[4], #r[3], got)
  sizes[s] = size_list
end
return {table.concat(heads, ';'), table.concat(sizes, ';'), pieces(parts, lens)}
