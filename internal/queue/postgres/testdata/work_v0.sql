CREATE TABLE canal_work_items (
    id character varying(36) NOT NULL,
    kind character varying(200) NOT NULL,
    priority bigint NOT NULL,
    payload text,
    state character varying(16) NOT NULL,
    attempts bigint NOT NULL,
    max_attempts bigint NOT NULL,
    last_error text,
    owner character varying(200),
    lease_until_us bigint NOT NULL,
    run_at_us bigint NOT NULL,
    created_us bigint NOT NULL,
    updated_us bigint NOT NULL,
    started_us bigint NOT NULL,
    finished_us bigint NOT NULL
);
ALTER TABLE ONLY canal_work_items
    ADD CONSTRAINT canal_work_items_pkey PRIMARY KEY (id);
CREATE INDEX canal_work_created ON canal_work_items USING btree (created_us, id);
CREATE INDEX canal_work_kind_created ON canal_work_items USING btree (kind, created_us, id);
CREATE INDEX canal_work_state_created ON canal_work_items USING btree (state, created_us, id);
CREATE INDEX canal_work_waiting ON canal_work_items USING btree (state, priority, created_us);
