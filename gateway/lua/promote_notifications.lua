-- Make the jobs of the notifications due now, for at most ARGV[2] appointments per call:
-- when more are due, those whose due notifications have the nearest deadlines, chosen
-- among the DEADLINE_WINDOW times as many that fell due first (see deadline.lua); their
-- jobs go on the stream nearest deadline first.
-- KEYS: notifications, jobs, waiting count
-- ARGV: now ms, limit, appointment data key prefix, job state key prefix, state ttl s
-- Returns {appointments seen, entries made into jobs}.
local now, limit, data_prefix, states = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0,
                         limit * DEADLINE_WINDOW)
-- Each appointment's data, its due entries (with their deadlines) and the rest.
local appointments = {}
for i, appointment in ipairs(found) do
  local key = data_prefix .. appointment
  local data = read_data(key)
  local item = {math.huge, i, appointment, key, data, {}, {}}
  if data then
    for entry in string.gmatch(data[3], '[^\30]+') do
      local due = string.match(entry, '^%d+')
      if due and tonumber(due) > now then
        table.insert(item[7], entry)
      else
        -- An entry's deadline: its due time and the time it may go after (see
        -- notification_job.lua); none, or an entry it cannot read, last.
        local late = due and string.match(entry, '^[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31[^\31]*\31(%d+)\31')
        local deadline = late and tonumber(due) + tonumber(late) or math.huge
        table.insert(item[6], {deadline, #item[6] + 1, entry})
        item[1] = math.min(item[1], deadline)
      end
    end
  end
  appointments[i] = item
end
if #appointments > limit then
  by_deadline(appointments)
  for i = #appointments, limit + 1, -1 do
    appointments[i] = nil
  end
end
-- Their due entries, nearest deadline first, whatever their appointment.
local due = {}
for _, item in ipairs(appointments) do
  for _, entry in ipairs(item[6]) do
    table.insert(due, {entry[1], #due + 1, entry[3], item})
  end
end
by_deadline(due)
local made = 0
for _, entry in ipairs(due) do
  local item = entry[4]
  local id = string.match(entry[3], '^%d+') and
    dispatch(states, KEYS[2], ARGV[5], item[3], entry[3], item[5])
  if id then
    made = made + 1
  end
  if type(id) == 'string' then
    item[5][4] = item[5][4] == '' and id or item[5][4] .. '\30' .. id
  end
end
for _, item in ipairs(appointments) do
  if item[5] then
    keep_waiting(KEYS[1], KEYS[3], item[4], item[3], item[5], item[7], #item[6])
  else
    redis.call('ZREM', KEYS[1], item[3])
  end
end
return {#appointments, made}
