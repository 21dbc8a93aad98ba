-- Append events to one session (append_events, the hot path): the version check, the
-- events (evlog.lua), the new head in one HSET and the session's updated_at index entries
-- (the order index and the composites), atomically. Kept apart from write.lua so a call carries and parses only what an append
-- needs (an append that creates the session or sets its expiry is write.lua's 'A').
-- This file is the short path, first in the script so that a short-path call defines no
-- helper at all (each definition is paid on every call: ~7k instructions for dochead.lua's
-- and ixcomp.lua's); append_touch.lua, after ixcomp.lua, rescores the composites when
-- the shard keeps some; append_general.lua, after ixadd.lua and evlog.lua, is the rest.
--
-- KEYS: doc, events, types, keys. ARGV:
--   1 grace_ms, 2 index prefix ('' = the client maintains the indexes, as on Cluster),
--   3 id (these three are the same for every append to a session), 4 now_ms, 5 token,
--   6 expected version ('' none), 7 known token ('' none: the write token of the
--   document the client holds a copy of, see _cache.py), 8 the events keys' PEXPIREAT
--   and 9 the session's index record after the append ('' none), both from the copy,
--   10 how the events are sent:
--   'N' numbered by the client from its copy (no keys): 11 the header's first 80 bytes
--       the append leaves (dochead.lua: version, updated_at = now_ms, event count and
--       last seq, zero-padded), then three arguments per event: its seq, its whole
--       record (see evlog.lua) and at ms, zero-padded to 20;
--   'K' (some event has a key) or '' (no copy): 11-13 what the copy says: its version,
--       event count and last seq ('' in 11: not sent), then five arguments per event:
--       the record's tail ('"t":..,"a":..,["k":..,]"d":..}'), type json, at ms, key
--       json ('' none), content digest.
--   8, 9 and 11-13 are used only if the document still is the copy (its write token is the known
--   one). Events numbered from a copy that is not current are renumbered if the stored
--   last seq is another. The short path (the copy current, 'N') handles strings only
--   (Lua formats and parses numbers with printf/strtod: a third of an append's
--   instructions; a number given to redis.call is formatted with printf too, so the
--   ranges are strings).
-- Reply: the new version (an integer) when the stored write token is the known one, else
-- the document (one string, as read.lua); a table for {'DONE', doc} (a retried call that
-- had already been applied), {'!', code, id, a, b} (nothing was written) and, for a call
-- with keys, {'K', version or document, {per event: its new seq (an integer); or,
-- already stored with the same content, the stored record; or, a repeat of an earlier
-- event of the call, minus that event's seq}} (when nothing is new nothing is written
-- and the version is the unchanged one).
local doc, ev, et, ek = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local IX, ID, NOW, TOKEN, KNOWN, MODE = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[7], ARGV[10]
-- the fixed header of a layout-3 document (155 bytes, dochead.lua; nil for a layout-2
-- hash or no document: append_general.lua reads it). Few strings are made here: each new
-- Lua string costs ~1k instructions (Redis's Lua hashes every byte), so the token is
-- compared in place and `am` kept padded.
local hdr = redis.pcall('GETRANGE', doc, '0', '154')
if type(hdr) ~= 'string' or #hdr ~= 155 or string.byte(hdr, 1) ~= 3 then hdr = nil end
local w = nil  -- the document's wt, am, v, ti (append_general.lua)
-- the document is the client's copy (the write token says so): the version check and
-- the expiry check were done from it, nothing else to read (the client sends the copy's
-- state only when its copy has the expected version and has not expired)
local current = hdr and KNOWN ~= '' and ARGV[11] ~= ''
  and string.sub(hdr, 103, 102 + #KNOWN) == KNOWN
  and (#KNOWN == 32 or string.byte(hdr, 103 + #KNOWN) == 32)
local index_in_full = false  -- the short path wrote all but a missing index entry
local touch = false  -- the shard's composite families (IX.."cf"): append_touch.lua rescores

if current and MODE == 'N' and (IX == '' or ARGV[9] ~= '') then
  -- numbered from the copy, which is the document: strings only (no number is formatted
  -- or parsed: the client sends the header's counters and `at` zero-padded to the
  -- header's width, and two such `at` compare as strings)
  local TI, tu = string.byte(hdr, 155) == 49, string.byte(hdr, 102) == 49
  local am = string.byte(hdr, 82) ~= 32 and string.sub(hdr, 82, 101)
  for i = 12, #ARGV, 3 do
    local seq, rec, at = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    redis.call('ZADD', ev, seq, rec)
    if TI then  -- the type index is kept (evlog.lua): its entry, the type json from the record
      local t = string.find(rec, ',"t":', 1, true) + 5
      local entry = string.sub(rec, t, string.find(rec, ',"a":', t, true) - 1)
      redis.call('ZADD', et, '0', entry .. '\0' .. string.format('%016x', seq))
    end
    if not am then
      am = at
    elseif string.byte(at) == 45 or string.byte(am) == 45 then
      local a, m = tonumber(at), tonumber(am)
      if a > m then am = at elseif a < m then tu = true end
    elseif at > am then
      am = at
    elseif at < am then
      tu = true
    end
  end
  -- the counters in place: one SETRANGE of the header's first 133 bytes (ver..wt)
  redis.call('SETRANGE', doc, '1', ARGV[11] .. am .. (tu and '1' or '0') .. TOKEN
    .. string.rep(' ', 32 - #TOKEN))
  -- after the writes: PEXPIREAT of a key that does not exist yet (a first append) is a no-op
  if ARGV[8] ~= '' then
    redis.call('PEXPIREAT', ev, ARGV[8])
    redis.call('PEXPIREAT', et, ARGV[8])
  end
  if IX ~= '' then
    -- the client made the record from its copy, which is this document: no read. A record
    -- that was not there (HSET added a field) means the session was not indexed: index
    -- it in full, from that record.
    if redis.call('HSET', IX .. 'r', ID, ARGV[9]) == 1 then
      index_in_full = true  -- by ix_add, defined below (append_general.lua)
    else
      redis.call('ZADD', IX .. 'u', NOW, ID)
      -- the composites kept (ixcomp.lua's comp_families, read here so that a shard
      -- without any defines nothing): rescored by append_touch.lua
      touch = redis.call('GET', IX .. 'cf')
    end
  end
  if not index_in_full and not touch then return tonumber(string.sub(ARGV[11], 1, 20)) end
end
