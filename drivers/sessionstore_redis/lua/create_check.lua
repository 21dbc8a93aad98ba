-- The rest of create.lua when something holds the id (loaded after doc.lua, inside the
-- `if` that create_rest.lua opens and this file closes): a live session (EXISTS, or this
-- call applied by an earlier try), a stub, a corrupt document, else an expired session,
-- replaced.
local h = d_hmget(doc, 'ver', 'ea', 'wt', 'grp', 'v')
if h[1] then
  local v = tonumber(h[5])
  if not tonumber(h[1]) or not v then return {'!', 'CORRUPT', ID, '', ''} end
  if v > 2 then return {'!', 'FORMAT', ID, '', ''} end
  if (not h[2]) or tonumber(h[2]) > tonumber(NOW) then  -- live
    if h[3] == TOKEN then return {'DONE', d_str(doc)} end
    return {'!', 'EXISTS', ID, '', ''}
  end
elseif h[4] then
  return {'!', 'PTR', ID, h[4], ''}
elseif d_get(doc) then
  return {'!', 'CORRUPT', ID, '', ''}
end

if not write_new() then return 1 end
end
