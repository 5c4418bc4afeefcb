-- The queue's own text columns compare as bytes ("C"): every claim and
-- outcome adds entries to indexes that lead with the queue and hold public
-- ids, states, kinds and keys, and under the database's collation each
-- comparison in those B-trees went through the locale (a profile of a
-- drain: a tenth of PostgreSQL's time in B-tree comparisons). These are
-- identifiers, never sorted for people, so byte order is the right one.
ALTER TABLE canal_queue_items
  ALTER COLUMN queue TYPE TEXT COLLATE "C",
  ALTER COLUMN public_id TYPE TEXT COLLATE "C",
  ALTER COLUMN kind TYPE TEXT COLLATE "C",
  ALTER COLUMN item_key TYPE TEXT COLLATE "C",
  ALTER COLUMN state TYPE TEXT COLLATE "C";
