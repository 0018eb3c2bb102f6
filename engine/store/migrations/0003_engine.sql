-- Engine at scale and under faults: who ran each chunk, delayed retries, picked-up tasks.

ALTER TABLE task_chunks
    ADD COLUMN attempt               integer NOT NULL DEFAULT 0,  -- 0: planned; n: n-th delayed retry
    ADD COLUMN target_connection_id  integer,      -- a retry of one target only; NULL: the whole record
    ADD COLUMN not_before            timestamptz,  -- a delayed retry is published at or after this
    ADD COLUMN published_at          timestamptz,  -- when the sweeper published a delayed retry
    ADD COLUMN started_by            text,         -- worker that last started running the chunk
    ADD COLUMN started_at            timestamptz,
    ADD COLUMN done_by               text;         -- worker whose commit counted
CREATE INDEX task_chunks_due ON task_chunks (not_before)
    WHERE state = 'pending' AND not_before IS NOT NULL AND published_at IS NULL;

-- Delayed-retry chunks are numbered from 2^30 upwards, separately from planned chunks.
ALTER TABLE batch_tasks ADD COLUMN retry_chunks integer NOT NULL DEFAULT 0;
CREATE INDEX batch_tasks_running ON batch_tasks (heartbeat_at) WHERE state = 'Started';

-- A dead worker's task was continued by another one (StartCount counts each once).
CREATE TABLE task_takeovers (
    task_id      bigint NOT NULL REFERENCES batch_tasks (id) ON DELETE CASCADE,
    dead_worker  text NOT NULL,
    taken_by     text NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task_id, dead_worker)
);
