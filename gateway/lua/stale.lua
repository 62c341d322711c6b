-- Shared by plan_notifications.lua: what an event that comes too late does.
-- Puts back an appointment's data (as read_data reads it) that a planning overwrote, to
-- last as a planning would make it last now: `keep` seconds past its last waiting entry's
-- due time (ms, as `now`), or past now when none waits.
local function put_back(key, data, now, keep)
  local last = now
  for entry in string.gmatch(data[3], '[^\30]+') do
    local due = tonumber(string.match(entry, '^%d+'))
    if due and due > last then
      last = due
    end
  end
  redis.call('SET', key, table.concat(data, '\29'), 'EX', keep + math.ceil((last - now) / 1000))
end
