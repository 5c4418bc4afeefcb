-- if-table: canal_work_items
-- Adopts the work items of Canal before the queue engine, in creation
-- order, keeping their ids (as public ids), attempts and times. Waiting
-- items (pending, retrying) stay waiting; a running item was cut short by
-- the old process: it becomes a suspect (rescued), its attempt not counted
-- as a failure; finished items keep their state (failed is dead).
INSERT INTO canal_queue_items (public_id, queue, kind, item_key, priority, payload, meta, state,
  attempt, failures, max_attempts, last_error, run_at_us, created_us, updated_us, started_us, finished_us)
SELECT id, 'work', kind, '', priority,
  CASE WHEN payload IS NULL OR payload = '' THEN 'null' ELSE payload END, '{}',
  CASE state WHEN 'pending' THEN 'pending' WHEN 'retrying' THEN 'pending' WHEN 'running' THEN 'rescued'
    WHEN 'done' THEN 'done' WHEN 'failed' THEN 'dead' ELSE 'dropped' END,
  attempts,
  CASE WHEN state IN ('running', 'done') THEN GREATEST(attempts - 1, 0) ELSE attempts END,
  max_attempts, COALESCE(last_error, ''),
  CASE WHEN state IN ('pending', 'retrying') THEN run_at_us ELSE 0 END,
  created_us, updated_us, started_us, finished_us
FROM canal_work_items ORDER BY created_us, id;
DROP TABLE canal_work_items;
