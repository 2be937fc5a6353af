-- A VACUUM that finds empty pages at a table's end truncates them under an ACCESS
-- EXCLUSIVE lock. The intake queues empty out again and again, so every VACUUM of them
-- (the worker's, every second under load, and autovacuum's) tried: for up to 5 s it
-- retried for the lock, and each time it got it, the Forgot Password INSERTs and the
-- workers' claims waited behind it (measured: VACUUMs of 1 to 5 s, and answers and
-- projection lag with a p99 several times their median at a steady rate). The pages are
-- filled again at once; keeping them costs nothing.
ALTER TABLE reset_intake_request SET (vacuum_truncate = false);
ALTER TABLE reset_intake_resend SET (vacuum_truncate = false);
