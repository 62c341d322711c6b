-- Shared by the scripts that promote due work: the deadline of a job, so that when more
-- is due than goes out at once, the nearest deadlines go first (PRODUCT.md "Delivery
-- deadlines"; gateway/deadlines.py decides whether a job is expired, not this).

-- How many times the batch the promotions look at to choose the nearest deadlines: the
-- choice is among the work that fell due first, so that one call's cost stays bounded.
local DEADLINE_WINDOW = 4

-- The day number (days since 1970-01-01) of a proleptic Gregorian date: Howard Hinnant's
-- days_from_civil.
local function days_from_civil(year, month, day)
  if month <= 2 then
    year = year - 1
  end
  local era = math.floor(year / 400)
  local yoe = year - era * 400
  local doy = math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- An RFC 3339 time as milliseconds since the epoch, or math.huge for text it cannot read
-- (such a job is ordered as one without a deadline).
local function rfc3339_ms(text)
  if type(text) ~= 'string' then
    return math.huge
  end
  local year, month, day, hour, minute, second, fraction, zone = string.match(text,
    '^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$')
  if not year then
    return math.huge
  end
  local offset = 0
  if zone ~= 'Z' and zone ~= 'z' then
    local sign, zone_hours, zone_minutes = string.match(zone, '^([+-])(%d%d):?(%d%d)$')
    if not sign then
      return math.huge
    end
    offset = (tonumber(zone_hours) * 60 + tonumber(zone_minutes)) * 60
    if sign == '-' then
      offset = -offset
    end
  end
  local seconds = days_from_civil(tonumber(year), tonumber(month), tonumber(day)) * 86400
    + tonumber(hour) * 3600 + tonumber(minute) * 60 + tonumber(second) - offset
  local millis = 0
  if #fraction > 1 then
    millis = math.floor(tonumber('0' .. fraction) * 1000)
  end
  return seconds * 1000 + millis
end

-- The deadline of a job (its JSON text), in milliseconds since the epoch; math.huge for
-- none. Found by a plain search, not by decoding the job, which cost a backlog's promotion
-- ten times as much: a context holding a key "expires_at" of its own, before the job's,
-- would only misplace the job in the order (whether it is expired is the handler's
-- decision, on the parsed job).
local function job_deadline(job)
  if not job then
    return math.huge
  end
  local at = string.find(job, '"expires_at"', 1, true)
  if not at then
    return math.huge
  end
  return rfc3339_ms(string.match(job, '^%s*:%s*"([^"]*)"', at + 12))
end

-- Ranks `items` (tables whose [1] is a deadline and [2] the order they came in) nearest
-- deadline first, in the order they came for equal deadlines.
local function by_deadline(items)
  table.sort(items, function(a, b)
    if a[1] ~= b[1] then
      return a[1] < b[1]
    end
    return a[2] < b[2]
  end)
  return items
end
