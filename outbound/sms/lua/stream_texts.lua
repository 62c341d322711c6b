-- The jobs among the next STEP entries of the stream (after ARGV[1], exclusive; '-' from
-- the start) that may be texts, with the last entry id read ('' at the end). The filter
-- runs in Redis, so that a backlog of e-mails is not sent over to be read and dropped.
-- KEYS: jobs
-- ARGV: start, count
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local found = {#entries < tonumber(ARGV[2]) and '' or entries[#entries][1]}
for _, entry in ipairs(entries) do
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'job' and string.find(fields[i + 1], 'sms.send', 1, true) then
      found[#found + 1] = fields[i + 1]
    end
  end
end
return found
