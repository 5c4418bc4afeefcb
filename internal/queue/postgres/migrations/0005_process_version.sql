-- Which Canal build each process runs, shown on the processes page.
ALTER TABLE canal_queue_processes ADD COLUMN version TEXT NOT NULL DEFAULT '';
