-- Unique items (queue.NewItem.UniqueKey): an item holds its unique key
-- while its state is one of its unique_states (bit i is the i-th of
-- queue.States(): pending, held, running, rescued, done, dead, dropped,
-- cancelled). The partial index covers exactly those rows, so a second
-- insert of a held key conflicts (ON CONFLICT DO NOTHING) and an item that
-- leaves its unique states frees the key with no write of its own. Rows
-- without a key are not in the index and cost it nothing. The predicate
-- is queuesql.Unique, spelled the same.
ALTER TABLE canal_queue_items ADD COLUMN unique_key TEXT COLLATE "C";
ALTER TABLE canal_queue_items ADD COLUMN unique_states INTEGER;
CREATE UNIQUE INDEX canal_queue_items_unique ON canal_queue_items (queue, unique_key)
  WHERE unique_key IS NOT NULL AND (unique_states & CASE state WHEN 'pending' THEN 1 WHEN 'held' THEN 2 WHEN 'running' THEN 4 WHEN 'rescued' THEN 8 WHEN 'done' THEN 16 WHEN 'dead' THEN 32 WHEN 'dropped' THEN 64 WHEN 'cancelled' THEN 128 ELSE 0 END) <> 0;
