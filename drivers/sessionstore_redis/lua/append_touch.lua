-- append.lua's short path, continued when the session's index shard keeps composite
-- families (`touch`: IX.."cf", read there): the session rescored in its updated_at
-- composites (ixcomp.lua), from the record the client sent.
if touch then
  CF = touch  -- comp_families' copy: not read again
  ix_touch(IX, ID, NOW, ARGV[9])
  return tonumber(string.sub(ARGV[11], 1, 20))
end
