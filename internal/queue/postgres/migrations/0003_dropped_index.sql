-- Retention deletes dropped items as it does done ones: by finish time.
CREATE INDEX canal_queue_items_dropped ON canal_queue_items (queue, finished_us) WHERE state = 'dropped';
-- Windows of failures read dead items by finish time.
CREATE INDEX canal_queue_items_dead ON canal_queue_items (queue, finished_us) WHERE state = 'dead';
