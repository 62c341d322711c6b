-- Drop what waits to text one number (it answered STOP), in the given appointments.
-- KEYS: notifications, waiting count
-- ARGV: appointment data key prefix, number, then the appointment ids
-- Returns, for each appointment, the entries dropped, joined by \x1e.
local dropped = {}
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  local data = read_data(key)
  local rest, gone = {}, {}
  for entry in string.gmatch(data and data[3] or '', '[^\30]+') do
    local fields = entry_fields(entry)
    if fields and fields[4] == 'sms' and fields[7] == ARGV[2] then
      table.insert(gone, entry)
    elseif fields then
      table.insert(rest, entry)
    end
  end
  if #gone > 0 then
    keep_waiting(KEYS[1], KEYS[2], key, ARGV[i], data, rest, #gone)
  end
  dropped[i - 2] = table.concat(gone, '\30')
end
return dropped
