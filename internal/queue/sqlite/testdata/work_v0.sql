CREATE TABLE `canal_work_items` (`id` text,`kind` text NOT NULL,`priority` integer NOT NULL,`payload` text,`state` text NOT NULL,`attempts` integer NOT NULL,`max_attempts` integer NOT NULL,`last_error` text,`owner` text,`lease_until_us` integer NOT NULL,`run_at_us` integer NOT NULL,`created_us` integer NOT NULL,`updated_us` integer NOT NULL,`started_us` integer NOT NULL,`finished_us` integer NOT NULL,PRIMARY KEY (`id`));
CREATE INDEX `canal_work_waiting` ON `canal_work_items`(`state`,`priority`,`created_us`);
CREATE INDEX `canal_work_kind_created` ON `canal_work_items`(`kind`,`created_us`,`id`);
CREATE INDEX `canal_work_state_created` ON `canal_work_items`(`state`,`created_us`,`id`);
CREATE INDEX `canal_work_created` ON `canal_work_items`(`created_us`,`id`);
