-- Shared by the scripts that record outcomes: an event goes on the events
-- stream and, when it concerns an appointment, on that appointment's history
-- (a stream kept `ttl` seconds after its last entry; its key shares the
-- prefix, hence the slot, of the declared keys).
local function publish(events, maxlen, history, ttl, event)
  redis.call('XADD', events, 'MAXLEN', '~', maxlen, '*', 'event', event)
  local appointment = cjson.decode(event)['appointment']
  if type(appointment) == 'string' then
    local key = history .. appointment
    redis.call('XADD', key, '*', 'event', event)
    redis.call('EXPIRE', key, ttl)
  end
end
