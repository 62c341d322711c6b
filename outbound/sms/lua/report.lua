-- A delivery report for the text a provider names by `id`: that text's record, marked as
-- reported, if one is kept under that id; else a final report (ARGV[1]; '' for one in
-- transit) is kept for the text whose lost answer will be found under that id. One
-- script, so that a report and the text's record never miss each other.
-- KEYS: message, early report
-- ARGV: report JSON or '', ttl
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'reported', '1')
  return redis.call('HGETALL', KEYS[1])
end
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
end
return false
