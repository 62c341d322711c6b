-- Shared by the scripts that make a waiting notification's job when it falls due: the
-- job notification_job in gateway/notifications.py makes of the same notification, to
-- the byte (tests/test_notifications.py compares the two). Needs appointment_data.lua
-- before it.

-- A notification's job (JSON) and its id: an `email.send` to one address or an `sms.send`
-- to one number, with its appointment's context (with a follow-up's place in the
-- account's list, and marked for one sent only if the client has not booked again: flag
-- '1'), under an id that names the planning job that made it (`source`). Every argument is text, as an entry holds it. The account id and
-- the kind need no escaping: the job schema allows none that would (gateway/jobs.py).
local function notification_job(source, account, appointment, context, kind, index, channel,
                                 recipient, flag)
  local id = source .. '/' .. kind .. '/' .. index .. '/' .. channel .. '/' .. recipient
  local job_kind, to = 'email.send', '[' .. cjson.encode(recipient) .. ']'
  if channel == 'sms' then
    job_kind, to = 'sms.send', cjson.encode(recipient)
  end
  -- A follow-up's place in the account's list names its template.
  local added = ''
  if kind == 'follow_up' then
    added = ',"follow_up":' .. index
  end
  if flag == '1' then
    added = added .. ',"only_if_not_rebooked":true'
  end
  if added ~= '' then
    context = string.sub(context, 1, -2) .. added .. '}'
  end
  local job = '{"v":1,"id":' .. cjson.encode(id) .. ',"kind":"' .. job_kind ..
    '","account":"' .. account .. '","appointment":' .. cjson.encode(appointment) ..
    ',"to":' .. to .. ',"template":"' .. kind .. '","context":' .. context .. '}'
  return id, job
end

-- Turns one waiting entry of an appointment (due ms, kind, index, channel, flag,
-- recipient joined by \31, a byte no id or address may hold: see gateway/notifications.py)
-- into its job on the stream. `data` is the appointment's (see read_data); `states` the
-- prefix of the job states' keys. Returns what make_job returns, or false for an entry it
-- cannot read.
local function dispatch(states, jobs, ttl, appointment, entry, data)
  local fields = split(entry, '\31', 6)
  if not fields then
    return false
  end
  local id, job = notification_job(data[2], data[1], appointment, data[6], fields[2],
                                   fields[3], fields[4], fields[6], fields[5])
  return make_job(states, jobs, ttl, id, job)
end
