-- A text the provider took, under its id: kept for a retry (never sent twice), the
-- delivery reports (matched to the job) and the automatic answer (in the account's name);
-- no longer in flight, and its in-flight record (under its reference) dropped when the
-- provider named it otherwise. Returns the final report that came for that id before the
-- text was known under it (its answer was lost), taken out: never given twice.
-- KEYS: delivered, message, last account, in flight, early report, reference's message
-- ARGV: number, provider id, ttl, job, account, appointment, kind
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'job', ARGV[4], 'account', ARGV[5], 'appointment', ARGV[6],
           'number', ARGV[1], 'kind', ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[3])
redis.call('HDEL', KEYS[4], ARGV[1])
if KEYS[6] ~= KEYS[2] then
  redis.call('DEL', KEYS[6])
end
local report = redis.call('GET', KEYS[5])
if report then
  redis.call('DEL', KEYS[5])
end
return report
