-- The end of create.lua when the id still had index entries (an expired session's that
-- the create replaced): they are moved to the new session's record (index.lua).
ix_set(IX, ID, record, old)
return 1
