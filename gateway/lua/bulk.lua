-- Runs calls of one script in one EVALSHA (gateway/batching.py). ARGV[1] holds the calls
-- in MessagePack, as one flat list: for each call, its number of keys and of arguments,
-- then its keys and its arguments. Each call runs protected on its own: one that fails
-- does not stop the others, and its reply is its error. A call that returns nothing
-- replies false (nil), as it would alone, so that the replies stay in step with the
-- calls. The script's `finish` runs after its calls, protected too: if it fails, its
-- error is every call's reply. The lines `-- {helpers}`, `-- {call}` and `-- {finish}`
-- are replaced by the script's own parts.
-- {helpers}
local function call(KEYS, ARGV)
-- {call}
end
local function finish()
-- {finish}
end
local calls, replies, at = cmsgpack.unpack(ARGV[1]), {}, 1
while calls[at] do
  local keys_end = at + 1 + calls[at]
  local args_end = keys_end + calls[at + 1]
  local ok, reply = pcall(call, {unpack(calls, at + 2, keys_end)},
                          {unpack(calls, keys_end + 1, args_end)})
  if not ok and type(reply) ~= 'table' then
    reply = {err = tostring(reply)}  -- redis.call's own errors are {err = ...} already
  elseif reply == nil then
    reply = false
  end
  replies[#replies + 1] = reply
  at = args_end + 1
end
local ok, failure = pcall(finish)
if not ok then
  failure = type(failure) == 'table' and failure or {err = tostring(failure)}
  for i = 1, #replies do
    replies[i] = failure
  end
end
return replies
