-- Shared by the scripts that end a job without recording its run (a cancellation found
-- by CLAIM, a dead letter): the sends a run made before it stopped (the relay or the
-- provider took them, and the job's `delivered` hash holds their message or provider id,
-- where an outcome already recorded holds its status word instead) are published as
-- `sent`, and marked recorded, so that the history says what the clients got.
local recorded_statuses = {sent = true, delivered = true, deferred = true, bounced = true,
                           failed = true, skipped = true, suppressed = true}
local function publish_sends(delivered, template, kind, channel, events, maxlen, history, ttl)
  if channel == '' then
    return
  end
  local found = redis.call('HGETALL', delivered)
  if #found == 0 then
    return
  end
  local event = cjson.decode(template)
  event['status'] = 'sent'
  event['kind'] = kind
  event['channel'] = channel
  event['reason'] = 'sent by a run that stopped before recording it'
  for i = 1, #found, 2 do
    if not recorded_statuses[found[i + 1]] then
      event['recipient'] = found[i]
      event['message_id'] = found[i + 1]
      publish(events, maxlen, history, ttl, cjson.encode(event))
      redis.call('HSET', delivered, found[i], 'sent')
    end
  end
end
