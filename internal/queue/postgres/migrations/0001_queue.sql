CREATE TABLE canal_queue_items (
  id BIGSERIAL PRIMARY KEY,
  public_id TEXT NOT NULL,
  queue TEXT NOT NULL,
  kind TEXT NOT NULL,
  item_key TEXT NOT NULL DEFAULT '',
  priority SMALLINT NOT NULL DEFAULT 0,
  payload TEXT NOT NULL,
  meta TEXT NOT NULL DEFAULT '{}',
  state TEXT NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL DEFAULT 0,
  blocks BOOLEAN NOT NULL DEFAULT false,
  solo BOOLEAN NOT NULL DEFAULT false,
  last_error TEXT NOT NULL DEFAULT '',
  run_at_us BIGINT NOT NULL DEFAULT 0,
  lease_until_us BIGINT NOT NULL DEFAULT 0,
  owner TEXT NOT NULL DEFAULT '',
  created_us BIGINT NOT NULL,
  updated_us BIGINT NOT NULL,
  started_us BIGINT NOT NULL DEFAULT 0,
  finished_us BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX canal_queue_items_public ON canal_queue_items (queue, public_id);
-- The claim walks only claimable rows, in (run_at, id) order, and stops at
-- its LIMIT: a partial index the planner picks without statistics, so the
-- claim costs the batch whatever the backlog (no sort of pending rows).
CREATE INDEX canal_queue_items_claim ON canal_queue_items (queue, priority, run_at_us, id) WHERE state = 'pending';
CREATE INDEX canal_queue_items_rescued ON canal_queue_items (queue, id) WHERE state = 'rescued';
CREATE INDEX canal_queue_items_lease ON canal_queue_items (lease_until_us) WHERE state = 'running';
-- A key's next item, and whether a key has an open one: O(1) each.
CREATE INDEX canal_queue_items_held ON canal_queue_items (queue, item_key, id) WHERE state = 'held';
CREATE INDEX canal_queue_items_open_key ON canal_queue_items (queue, item_key)
  WHERE item_key <> '' AND state IN ('pending', 'running', 'rescued', 'dead');
CREATE INDEX canal_queue_items_state ON canal_queue_items (queue, state, id);
CREATE INDEX canal_queue_items_kind ON canal_queue_items (queue, kind, id);
CREATE INDEX canal_queue_items_done ON canal_queue_items (queue, finished_us) WHERE state = 'done';
CREATE TABLE canal_queue_attempts (
  item_id BIGINT NOT NULL,
  number INTEGER NOT NULL,
  started_us BIGINT NOT NULL,
  duration_us BIGINT NOT NULL,
  error TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (item_id, number)
);
CREATE TABLE canal_queue_processes (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_us BIGINT NOT NULL,
  heartbeat_us BIGINT NOT NULL
);
-- Wake-ups: one notification per inserting statement and queue, delivered
-- at commit to every listening process (the payload names the schema, so
-- several schemas can share a database).
CREATE FUNCTION canal_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE q text;
BEGIN
  FOR q IN SELECT DISTINCT n.queue FROM canal_queue_new n WHERE n.state = 'pending' LOOP
    PERFORM pg_notify('canal_queue', current_schema() || '.' || q);
  END LOOP;
  RETURN NULL;
END $$;
CREATE TRIGGER canal_queue_items_notify AFTER INSERT ON canal_queue_items
  REFERENCING NEW TABLE AS canal_queue_new FOR EACH STATEMENT EXECUTE FUNCTION canal_queue_notify();
