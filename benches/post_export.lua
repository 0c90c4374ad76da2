-- wrk script: POST /api/exports with a small JSON body (an age range of a handful of
-- students), so that each request queues one export job.
wrk.method = "POST"
wrk.body = '{"format":"csv","min_age":30,"max_age":30}'
wrk.headers["Content-Type"] = "application/json"
