-- Shared by the scripts that take entries out of an appointment's waiting ones: keep
-- the rest (joined by \x1e) in its data (see appointment_data.lua), under `key`, and
-- wait again for the first of them to fall due, or no more; `gone` entries fewer wait in
-- all (the count `waiting`, see plan_notifications.lua).
local function keep_waiting(notifications, waiting, key, appointment, data, rest, gone)
  data[3] = table.concat(rest, '\30')
  write_data(key, data)
  if gone > 0 then
    redis.call('DECRBY', waiting, gone)
  end
  local first
  for _, entry in ipairs(rest) do
    local due = string.match(entry, '^%d+')
    if not first or tonumber(due) < tonumber(first) then
      first = due
    end
  end
  if first then
    redis.call('ZADD', notifications, first, appointment)
  else
    redis.call('ZREM', notifications, appointment)
  end
end
