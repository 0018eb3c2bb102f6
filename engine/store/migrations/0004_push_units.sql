-- Two-stage chunks: a planned chunk reads the source and writes the CRM (stage 1), then stores
-- one push unit per target connection (stage 2), a task_chunks row numbered like the delayed
-- retries (from 2^30, counted in retry_chunks) with target_connection_id set and attempt 0.
ALTER TABLE batch_tasks
    -- of retry_chunks, how many are push units (the rest are delayed retries)
    ADD COLUMN push_units integer NOT NULL DEFAULT 0,
    -- (record, connection) steps with a final result: progress = done_work over
    -- total_records x (1 + target connections)
    ADD COLUMN done_work  bigint  NOT NULL DEFAULT 0;
