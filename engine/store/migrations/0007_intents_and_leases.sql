-- Field changes a worker is about to write to a target, recorded (and committed) before the
-- connector's save. The unit's commit settles them: a change that reached the target is in the
-- sync log exactly once even when the worker, the broker or PostgreSQL dies between the save and
-- the commit (the redelivery finds the value equal to an unsettled intent's new value and logs
-- the intent). No foreign key to batch_tasks, for the reason given in 0005.
CREATE TABLE change_intents (
    task_id         bigint      NOT NULL,
    chunk_no        integer     NOT NULL,
    connection_id   integer     NOT NULL,
    internal_key_id bigint      NOT NULL,
    external_key_id bigint,
    erp_actor_type  text        NOT NULL,
    erp_field       text        NOT NULL,
    crm_field       text        NOT NULL,
    target_is_crm   boolean     NOT NULL,
    old_value       text,
    new_value       text,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX change_intents_key ON change_intents (task_id, internal_key_id);

-- One lease per engine process, renewed every heartbeat_interval: a worker whose lease is older
-- than stale_after is dead, whatever PostgreSQL still shows of its connections (a frozen
-- process, a vanished host, a pooler in between).
CREATE TABLE worker_leases (
    worker     text        PRIMARY KEY,
    renewed_at timestamptz NOT NULL DEFAULT now()
);

-- The sweeper looks for pending chunks started by a worker whose lease ran out.
CREATE INDEX task_chunks_started_pending ON task_chunks (started_by)
    WHERE state = 'pending' AND started_by IS NOT NULL;

-- The worker that last started planning the task: a command redelivered while that worker is
-- alive (a closed channel, a broker restart) is not a restart.
ALTER TABLE batch_tasks ADD COLUMN planned_by text;
