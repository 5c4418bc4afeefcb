-- The outbox list's key filter (one key's messages, newest first). Partial:
-- only keyed rows pay for it on write, and the filter's query repeats
-- "item_key <> ''" so every plan (a generic one too) may use it.
CREATE INDEX canal_queue_items_key ON canal_queue_items (queue, item_key, id) WHERE item_key <> '';
