-- if-table: canal_outbox_messages
-- Adopts the outbox tables of Canal before the queue engine: every message
-- keeps its seq (as id, so commit order holds) and its UUID, every attempt
-- its number. An inflight message was cut short by the old process: it
-- becomes a suspect. A pending message behind an open one of its key is held.
INSERT INTO canal_queue_items (id, public_id, queue, kind, item_key, priority, payload, meta, state,
  attempt, failures, max_attempts, blocks, last_error, run_at_us, created_us, updated_us, finished_us)
SELECT seq, id, 'outbox', topic, msg_key, 0, payload, headers,
  CASE status WHEN 'pending' THEN 'pending' WHEN 'inflight' THEN 'rescued' WHEN 'dispatched' THEN 'done' ELSE 'dead' END,
  attempts, failures, 0, blocks, last_error,
  CASE WHEN status = 'pending' THEN due_us ELSE 0 END,
  created_us, updated_us,
  CASE WHEN status = 'dispatched' THEN dispatched_us WHEN status = 'dead' THEN due_us ELSE 0 END
FROM canal_outbox_messages;
UPDATE canal_queue_items SET state = 'held'
WHERE queue = 'outbox' AND item_key <> '' AND state = 'pending' AND EXISTS (
  SELECT 1 FROM canal_queue_items e
  WHERE e.queue = 'outbox' AND e.item_key = canal_queue_items.item_key AND e.id < canal_queue_items.id
    AND (e.state IN ('pending', 'held', 'running', 'rescued') OR (e.state = 'dead' AND e.blocks)));
INSERT INTO canal_queue_attempts (item_id, number, started_us, duration_us, error)
SELECT m.seq, a.number, a.started_us, a.duration_us, a.error
FROM canal_outbox_attempts a JOIN canal_outbox_messages m ON m.id = a.message_id;
SELECT setval(pg_get_serial_sequence('canal_queue_items', 'id'), GREATEST((SELECT MAX(id) FROM canal_queue_items), 1));
DROP TABLE canal_outbox_attempts;
DROP TABLE canal_outbox_messages;
