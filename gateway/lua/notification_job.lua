-- Shared by the scripts that make a waiting notification's job when it falls due: the
-- job notification_job in gateway/notifications.py makes of the same notification, to
-- the byte (tests/test_notifications.py compares the two). Needs appointment_data.lua
-- before it.

-- A deadline given in milliseconds since the epoch, as RFC 3339 UTC to the second below:
-- expires_text in gateway/notifications.py. Redis's Lua has no os.date: the civil date of
-- a day number is Howard Hinnant's days_from_civil inverted (proleptic Gregorian).
local function rfc3339_seconds(ms)
  local seconds = math.floor(tonumber(ms) / 1000)
  local days = math.floor(seconds / 86400)
  local rest = seconds - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
                          - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02dZ', year, month, day,
                       math.floor(rest / 3600), math.floor(rest % 3600 / 60), rest % 60)
end

-- A notification's job (JSON) and its id: an `email.send` to one address or an `sms.send`
-- to one number, with its appointment's context (with a follow-up's place in the
-- account's list, and marked for one sent only if the client has not booked again: flag
-- '1'), its deadline (`expires`: milliseconds since the epoch, '' for none), under an id
-- that names the planning job that made it (`source`). Every argument is text, as an entry
-- holds it. The account id and
-- the kind need no escaping: the job schema allows none that would (gateway/jobs.py).
local function notification_job(source, account, appointment, context, kind, index, channel,
                                 recipient, flag, expires)
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
  local expires_at = ''
  if expires ~= '' then
    expires_at = '"expires_at":"' .. rfc3339_seconds(expires) .. '",'
  end
  local job = '{"v":1,"id":' .. cjson.encode(id) .. ',"kind":"' .. job_kind ..
    '","account":"' .. account .. '","appointment":' .. cjson.encode(appointment) ..
    ',"to":' .. to .. ',"template":"' .. kind .. '",' .. expires_at .. '"context":' ..
    context .. '}'
  return id, job
end

-- Turns one waiting entry of an appointment (due ms, kind, index, channel, flag, ms it may
-- go after its due time ('' for no deadline), recipient joined by \31, a byte no id or
-- address may hold: see gateway/notifications.py)
-- into its job on the stream. `data` is the appointment's (see read_data); `states` the
-- prefix of the job states' keys. Returns what make_job returns, or false for an entry it
-- cannot read.
local function dispatch(states, jobs, ttl, appointment, entry, data)
  local fields = entry_fields(entry)
  if not fields then
    return false
  end
  local expires = ''
  if fields[6] ~= '' then
    expires = tostring(tonumber(fields[1]) + tonumber(fields[6]))
  end
  local id, job = notification_job(data[2], data[1], appointment, data[6], fields[2],
                                   fields[3], fields[4], fields[7], fields[5], expires)
  return make_job(states, jobs, ttl, id, job)
end
