-- A successful last attempt is kept in its item's row (started_us and
-- duration_us) instead of a row of canal_queue_attempts: the busiest path
-- writes one row, not two. -1: the item's attempts are all rows there.
-- (The state index stays whole here: SQLite uses a partial index only
-- when the query repeats its WHERE term.)
ALTER TABLE canal_queue_items ADD COLUMN duration_us INTEGER NOT NULL DEFAULT -1;
