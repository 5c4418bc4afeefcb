CREATE TABLE canal_outbox_attempts (
    message_id character varying(36) NOT NULL,
    number bigint NOT NULL,
    started_us bigint NOT NULL,
    duration_us bigint NOT NULL,
    error text DEFAULT ''::text NOT NULL
);
CREATE TABLE canal_outbox_messages (
    seq bigint NOT NULL,
    id character varying(36) NOT NULL,
    topic character varying(200) NOT NULL,
    msg_key character varying(200) DEFAULT ''::character varying NOT NULL,
    payload text NOT NULL,
    headers text NOT NULL,
    status character varying(16) NOT NULL,
    due_us bigint DEFAULT 0 NOT NULL,
    attempts bigint DEFAULT 0 NOT NULL,
    failures bigint DEFAULT 0 NOT NULL,
    last_error text DEFAULT ''::text NOT NULL,
    blocks boolean DEFAULT false NOT NULL,
    claim_token character varying(36) DEFAULT ''::character varying NOT NULL,
    created_us bigint NOT NULL,
    updated_us bigint NOT NULL,
    dispatched_us bigint DEFAULT 0 NOT NULL
);
CREATE SEQUENCE canal_outbox_messages_seq_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;
ALTER SEQUENCE canal_outbox_messages_seq_seq OWNED BY canal_outbox_messages.seq;
ALTER TABLE ONLY canal_outbox_messages ALTER COLUMN seq SET DEFAULT nextval('canal_outbox_messages_seq_seq'::regclass);
ALTER TABLE ONLY canal_outbox_attempts
    ADD CONSTRAINT canal_outbox_attempts_pkey PRIMARY KEY (message_id, number);
ALTER TABLE ONLY canal_outbox_messages
    ADD CONSTRAINT canal_outbox_messages_pkey PRIMARY KEY (seq);
CREATE INDEX canal_outbox_messages_claim ON canal_outbox_messages USING btree (status, due_us);
CREATE UNIQUE INDEX canal_outbox_messages_id ON canal_outbox_messages USING btree (id);
CREATE INDEX canal_outbox_messages_inflight_seq ON canal_outbox_messages USING btree (seq) WHERE ((status)::text = 'inflight'::text);
CREATE INDEX canal_outbox_messages_key_inflight ON canal_outbox_messages USING btree (msg_key) WHERE ((status)::text = 'inflight'::text);
CREATE INDEX canal_outbox_messages_key_open ON canal_outbox_messages USING btree (msg_key, seq) WHERE ((status)::text <> 'dispatched'::text);
CREATE INDEX canal_outbox_messages_pending_seq ON canal_outbox_messages USING btree (seq) WHERE ((status)::text = 'pending'::text);
CREATE INDEX canal_outbox_messages_status_seq ON canal_outbox_messages USING btree (status, seq);
