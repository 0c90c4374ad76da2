"""Chaos harness for roster: the production shape under random faults, then every promise checked.

It starts a private PostgreSQL cluster and Redis in a temporary directory, one
`roster serve --no-workers` and three `roster worker` processes on them, serving two
queues with 6 workers in all: `ROSTER_QUEUES=default:1,imports:1` (twice) and
`ROSTER_QUEUE=default ROSTER_CONCURRENCY=2` (the one-queue spelling). It submits jobs in
bursts (about 15 % of them cancelled at some moment: at once, while running, or later),
follows every job over WebSocket (plus one `/ws` dashboard subscribed to "*"), and
meanwhile injects faults at random intervals, sometimes two at once (every kind at least
once when there are as many faults as kinds), and pauses queues at moments of their own.

About 80 % of the jobs are exports (csv or jsonl, an age range or none). The others are
imports (`POST /api/imports`, half `skip_invalid`, half `all_or_nothing`) of a CSV of
(students / 20,000) x 300-1,000 rows, within 1,000-10,000 (so 1,000-2,000 with --quick), named
`chaos-imp-<n>-<row>`, unique to import n; about half the files (each mode at least one
with and one without, when there are 4 imports) have 1-5 invalid rows (age 200 or -1, a
blank name, age "12.5"). Some imports are cancelled mid-batch: one of each mode when
there are 6 imports (the all_or_nothing one valid), then a quarter of the others; their
files are 10 times longer (up to 20,000 rows: a few tenths of a second) and the cancel
is sent within 50 ms of their progress showing rows done (their follower's or the jobs
table's); one that ended first is followed 5-15 s later by another of its mode, up to 4
in all. Every submission keeps one Idempotency-Key across its retries.

Each job names a queue or none (the web process puts it in `default`): exports half none,
35 % `default`, 15 % `imports`; imports 20 % none, 20 % `default`, 60 % `imports`. 60 %
of the jobs ask for a priority 0-9 (the others get 5), and 25 % are delayed 1-5 s (by
`run_in`, a quarter of them by `run_at`, an RFC 3339 time as far ahead).

The faults:

  kill_worker    kill -9 a worker (one running jobs, if any), restart it 0-3 s later
  pause_worker   SIGSTOP a worker for lease+2..lease+6 s, then SIGCONT
  term_worker    SIGTERM a worker (sometimes a second one 0.5 s later), restart it
  redis_restart  kill -9 Redis (once jobs wait in a queue, if within 10 s), restart it
                 with its append-only file (its streams only wake consumers up: the table
                 says what is due)
  redis_wipe     the same, restarting it empty
  pg_restart     pg_ctl restart -m fast (sometimes -m immediate)
  lock_jobs      LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE for 12 s
  pool_exhaust   80 concurrent slow student searches for 10 s
  cancel_kill    cancel a running job and kill -9 its worker at the same moment
                 (submitting an export for it when no job runs)
  kill_serve     kill -9 the web process, restart it 0-2 s later

Beside them, at random moments (one every 10 s on average, whatever fault is under way):

  pause_queue    POST /api/queues/{default|imports}/pause, 1-6 s later /resume (retried
                 until answered); each window recorded on the database's clock, from the
                 pause's paused_at to the clock read just before the resume is sent

A roster process that exits by itself (say, refused to start while Redis was down) is
restarted and reported. Imports commit ROSTER_IMPORT_BATCH_ROWS = 50 rows at a time.
Exports read ROSTER_EXPORT_BATCH_ROWS = students / 5,000 rows a
batch, so that one lasts a couple of seconds and faults meet running jobs; imports insert
(and skip_invalid commits) as many rows a batch, so that one lasts a few seconds too.

Then it restarts anything down, resumes every queue the table shows paused (until none
is), waits for every accepted job to end (for as long as jobs
run or end; up to 15 minutes), lets the sweeper settle for 15 s, and counts:

  lost                accepted (202) and not ended once nothing ran or ended for a while
  stalls              a job due in its queue for more than the redelivery interval + 5 s
                      while a worker slot of that queue stood idle and no database or
                      Redis fault was under way (guarantee 10), counted during the whole
                      run; a delayed job is not due before its run_after, nor a job of a
                      paused queue while it is paused (the monitor reads queue_pauses with
                      the jobs, in one statement)
  double completions  `job ID succeeded` logged more than once, or two files for one job
                      (an import's upload aside)
  corrupt files       a succeeded export's file missing, or not matching its result (size,
                      sha256, rows), unparsable, out of (age, id) order, duplicate ids,
                      ages outside the job's range, a count of seeded rows (names not
                      `chaos-imp-`) other than the database's, written after its job ended
                      (a rewrite, even of equal bytes), or a download whose sha256 differs.
                      An export may or may not hold rows imported while it ran (a resumed
                      export reads on from its checkpoint as the table is then); order,
                      duplicates and ranges are checked over all its rows. For an import:
                      its upload missing or not the bytes sent; a rejects report missing
                      when the file had invalid rows (or present when it had none), not
                      listing exactly their lines, or downloading other bytes
  leftover files      hidden or *.part files, or files that neither a job's result names
                      (a succeeded export's file, an ended import's rejects report) nor an
                      existing import names as its upload; uploads of no job (a request
                      cut by kill_serve: roster keeps them 10 minutes) are allowed only up
                      to the number of import requests that got no answer
  double inserts      an import's name (`chaos-imp-<n>-<row>`) in `students` more than once
  wrong import counts a succeeded import whose rows in `students` differ from its
                      `result.inserted`, its valid rows or their ages, or whose result
                      miscounts rows or rejects; an all_or_nothing import that did not
                      succeed with rows in the table; a cancelled (or failed) skip_invalid
                      import whose rows are not the first k of its valid rows; an invalid
                      row inserted; rows of an import that was never accepted
  wrong endings       an export whose cancel got 202 but did not end `cancelled`; one never
                      cancelled that did not end `succeeded`. An import: `succeeded`
                      (`failed` for an all_or_nothing file with invalid rows) when never
                      cancelled; after a cancel answered 202, `cancelled` or, when the
                      cancel came after its last commit, that same ending
  missed endings      a subscriber whose last known status is not the job's final one
                      (the dashboard: of the jobs that ended while it was connected)
  seq backwards       a frame whose seq is lower than an earlier one on the same connection
  uncommitted events  events that describe no committed state (guarantee 11), from every
                      watcher (the followers, the dashboard) and every cancel's 202 answer:
                      a (job, seq) told with two meanings (a progress and a status, or two
                      statuses, progress values or cancel marks); a seq beyond the job's
                      final row's (`GET /api/jobs/{id}` at the end); anything but that row
                      told at its seq; an ending a watcher knows at another seq than the
                      final row's; a skip_invalid import's progress covering more valid
                      rows than it left in `students` (a rolled-back batch's). One per
                      (job, seq), and per watcher's ending
  mid-batch cancels   of the imports cancelled while they ran with rows done and left (a
                      cancel answered 202 showing it so) or planned to be: one that did not
                      end `cancelled` although its cancel was answered with rows left (one
                      answered 409 or after every row: not its ending as never cancelled);
                      a follower, or the dashboard connected as it ended, not knowing its
                      ending; an all_or_nothing one cancelled with rows in `students`; a
                      skip_invalid one with a row twice or rows not the first of its valid
                      ones. And one per mode planned but never cancelled mid-batch
  slow stops          a worker still running 3 s after a second SIGTERM, or
                      grace + 15 s after one
  ran early           a job whose first attempt (job_attempts.started_at) began before its
                      run_after as first accepted (the accept's answer, else the monitor's
                      first sight of the row before any attempt), all on the database's
                      clock; or a delayed job accepted due earlier than asked (the first
                      request's send time + run_in, or run_at)
  wrong queue         a job in another queue than it named (or `default`, naming none); an
                      attempt (job_attempts.worker, `<process name>/<tag>`, the name holding
                      the pid) on a process the harness did not start with the job's queue,
                      or whose workers-table row (read every second) does not list it; a
                      workers row naming other queues than its process was started with
  ran while paused    an attempt of a job that began within a pause window of its queue,
                      more than 1 s after the pause's paused_at (a claim already under way)

It also prints the time from each kill -9 / SIGSTOP of a worker to each job it held being
back in the queue, and running again under another lease or ended (p50, p99, max), in all
and for the kills no database or Redis fault overlapped (a locked or restarting database
holds every recovery up; for running again, no pause of the job's queue either). Back in
the queue has the goal p99 <= lease + 5 s (informational). Running again includes waiting
for a free worker slot of the job's queue under a backlog; that no slot stood idle
meanwhile is what the stalls check asserts.
Exit status 0 only when every count is 0.

Run it (as root: PostgreSQL runs as `postgres` through runuser; needs PostgreSQL's
initdb and pg_ctl, psql, redis-server, and `pip install websockets`):

    python3 benches/chaos.py --roster target/release/roster           # about 10 minutes
    python3 benches/chaos.py --roster target/release/roster --quick   # under 4 minutes (CI)

Options: --jobs N (200; --quick 30; imports included), --faults M (100; --quick 15),
--seed S, --students K (200000; --quick 50000), --report FILE (append a Markdown
section), --keep (keep the temporary directory with every process's log).

`benches/chaos.py` is the entry point; the modules of this package:

  settings   the run's fixed settings, the fault kinds, the names of the checks
  common     the run's clock and log line, free ports, running a command
  processes  the private PostgreSQL, Redis and roster processes, their supervision
  api        roster's HTTP API as the harness calls it
  watchers   the WebSocket followers and the dashboard, and what each was told
  monitor    the jobs table polled: statuses, queues, pauses, first run_after, recoveries
             after kills, stalls, outages; the workers table (process -> queues)
  workload   the job mix (exports, import files, queues, priorities, delays), its
             submission and its cancels
  faults     the faults and their injection, the queue pauses and the final resume
  files      what an export's file and an import's rejects report must hold
  checks     the final checks and their findings
  report     the printed summary and the --report Markdown section
  main       the command line and the run from start to exit status
"""
