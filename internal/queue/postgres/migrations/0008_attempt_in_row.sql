-- A successful last attempt is kept in its item's row (started_us and
-- duration_us) instead of a row of canal_queue_attempts: the busiest path
-- writes one row, not two. -1: the item's attempts are all rows there.
ALTER TABLE canal_queue_items ADD COLUMN duration_us BIGINT NOT NULL DEFAULT -1;
-- Running items are listed and counted through canal_queue_items_lease (a
-- few per worker); leaving them out of the state index spares every claim
-- one index entry. A query for one or more other states still uses it:
-- PostgreSQL proves state = 'done' implies state <> 'running'.
DROP INDEX canal_queue_items_state;
CREATE INDEX canal_queue_items_state ON canal_queue_items (queue, state, id) WHERE state <> 'running';
-- The same for the kind index: a query for a kind over running and other
-- states is asked as two (queuesql.byRunning).
DROP INDEX canal_queue_items_kind;
CREATE INDEX canal_queue_items_kind ON canal_queue_items (queue, kind, id) WHERE state <> 'running';
-- Running items of one queue (a kind's list, a count) are found by this
-- index alone; the rescuer, over every queue, reads all of it, which is
-- only what is running.
DROP INDEX canal_queue_items_lease;
CREATE INDEX canal_queue_items_lease ON canal_queue_items (queue, lease_until_us) WHERE state = 'running';
-- Public ids are made unique where they are made (a UUIDv7 per message, a
-- time-prefixed random id per work item; Import checks the ones it is
-- given), so their index need not be: a unique index checks every new row
-- version against the old one (a heap visit per claim and per outcome),
-- which cost a third of a claim's time.
DROP INDEX canal_queue_items_public;
CREATE INDEX canal_queue_items_public ON canal_queue_items (queue, public_id);
