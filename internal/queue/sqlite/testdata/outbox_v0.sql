CREATE TABLE `canal_outbox_attempts` (`message_id` text,`number` integer,`started_us` integer NOT NULL,`duration_us` integer NOT NULL,`error` text NOT NULL DEFAULT "",PRIMARY KEY (`message_id`,`number`));
CREATE TABLE `canal_outbox_messages` (`seq` integer PRIMARY KEY AUTOINCREMENT,`id` text NOT NULL,`topic` text NOT NULL,`msg_key` text NOT NULL DEFAULT "",`payload` text NOT NULL,`headers` text NOT NULL,`status` text NOT NULL,`due_us` integer NOT NULL DEFAULT 0,`attempts` integer NOT NULL DEFAULT 0,`failures` integer NOT NULL DEFAULT 0,`last_error` text NOT NULL DEFAULT "",`blocks` numeric NOT NULL DEFAULT false,`claim_token` text NOT NULL DEFAULT "",`created_us` integer NOT NULL,`updated_us` integer NOT NULL,`dispatched_us` integer NOT NULL DEFAULT 0);
CREATE INDEX `canal_outbox_messages_claim` ON `canal_outbox_messages`(`status`,`due_us`);
CREATE UNIQUE INDEX `canal_outbox_messages_id` ON `canal_outbox_messages`(`id`);
CREATE INDEX canal_outbox_messages_inflight_seq ON canal_outbox_messages (seq) WHERE status = 'inflight';
CREATE INDEX canal_outbox_messages_key_inflight ON canal_outbox_messages (msg_key) WHERE status = 'inflight';
CREATE INDEX canal_outbox_messages_key_open ON canal_outbox_messages (msg_key, seq) WHERE status <> 'dispatched';
CREATE INDEX canal_outbox_messages_pending_seq ON canal_outbox_messages (seq) WHERE status = 'pending';
CREATE INDEX canal_outbox_messages_status_seq ON canal_outbox_messages (status, seq);
