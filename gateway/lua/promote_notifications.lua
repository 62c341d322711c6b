-- Make the jobs of the notifications due now, for at most ARGV[2] appointments per call.
-- KEYS: notifications, jobs, waiting count
-- ARGV: now ms, limit, appointment data key prefix, job state key prefix, state ttl s
-- Returns {appointments seen, entries made into jobs}.
local now, data_prefix, states = tonumber(ARGV[1]), ARGV[3], ARGV[4]
local appointments = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
local made = 0
for _, appointment in ipairs(appointments) do
  local key = data_prefix .. appointment
  local data = read_data(key)
  if data then
    local rest, gone, ids = {}, 0, {}
    if data[4] ~= '' then
      ids[1] = data[4]
    end
    for entry in string.gmatch(data[3], '[^\30]+') do
      local due = string.match(entry, '^%d+')
      if due and tonumber(due) > now then
        table.insert(rest, entry)
      else
        gone = gone + 1
        local id = due and dispatch(states, KEYS[2], ARGV[5], appointment, entry, data)
        if id then
          made = made + 1
        end
        if type(id) == 'string' then
          table.insert(ids, id)
        end
      end
    end
    data[4] = table.concat(ids, '\30')
    keep_waiting(KEYS[1], KEYS[3], key, appointment, data, rest, gone)
  else
    redis.call('ZREM', KEYS[1], appointment)
  end
end
return {#appointments, made}
