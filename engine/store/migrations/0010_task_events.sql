-- Completion notifications (issue 17): a transactional outbox of task.finished events, the
-- webhook deliveries made from them, and the per-target key restriction of a RetryFailed task.

-- RetryFailed: per target connection (JSON object key), the internal keys to push there. A
-- record named under no target is pushed to every target; NULL = no restriction.
ALTER TABLE batch_tasks ADD COLUMN target_keys jsonb;

-- One row per finished task, written by the trigger below in the transaction that makes the
-- task final (whichever code path does it), so a worker dying right after that commit loses no
-- event. The relay fills in the body once (stable across republishes) and marks it published
-- after the broker's confirm. No foreign key to batch_tasks, for the reason given in 0005.
CREATE TABLE task_events (
    task_id       bigint      PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    body          jsonb,
    prepared_at   timestamptz,
    published_at  timestamptz,
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX task_events_unpublished ON task_events (created_at) WHERE published_at IS NULL;
CREATE INDEX task_events_unprepared ON task_events (created_at) WHERE body IS NULL;

CREATE FUNCTION erpsync_task_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO task_events (task_id) VALUES (NEW.id) ON CONFLICT (task_id) DO NOTHING;
    RETURN NULL;
END
$$;

-- A task is final once in one of these states; a stopped task (Failed) that later finishes as
-- Succeeded has had its event already: one event per task.
CREATE TRIGGER batch_tasks_finished AFTER UPDATE OF state ON batch_tasks FOR EACH ROW
    WHEN (NEW.state IN ('Succeeded', 'Failed', 'SucceededManualCleanup')
          AND OLD.state NOT IN ('Succeeded', 'Failed', 'SucceededManualCleanup'))
    EXECUTE FUNCTION erpsync_task_finished();
CREATE TRIGGER batch_tasks_created_final AFTER INSERT ON batch_tasks FOR EACH ROW
    WHEN (NEW.state IN ('Succeeded', 'Failed', 'SucceededManualCleanup'))
    EXECUTE FUNCTION erpsync_task_finished();

-- One row per finished task and configured webhook (by its name), made when the event's body
-- is prepared. A worker claims a due row by moving next_attempt_at ahead (a lease), posts, and
-- records the answer: delivered, or the next attempt with backoff, or given up.
CREATE TABLE webhook_deliveries (
    id               bigserial   PRIMARY KEY,
    task_id          bigint      NOT NULL,
    webhook          text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    last_status      integer,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    gave_up_at       timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (task_id, webhook)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX webhook_deliveries_given_up ON webhook_deliveries (gave_up_at)
    WHERE gave_up_at IS NOT NULL;
