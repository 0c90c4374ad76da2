-- wrk script: POST /api/exports with a small JSON body (an age range of a handful of
-- students). Each request carries an Idempotency-Key of its own, so that each one queues
-- a job of its own (without a key, an identical export already queued is returned).
wrk.method = "POST"
wrk.body = '{"format":"csv","min_age":30,"max_age":30}'
wrk.headers["Content-Type"] = "application/json"

local counter = 0
local prefix

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
end

function init(args)
  prefix = string.format("wrk-%d-%d-%d-", os.time(), thread_id or 0, math.random(1, 1000000000))
  counter = 0
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. counter
  return wrk.format()
end
