-- Front door: browser sessions and issued tickets (hashed), idempotency keys, stopped tasks.

-- A browser session (kind 'session', with an XSRF token) or an issued SOTicket (kind 'ticket').
-- Only SHA-256 digests of the secrets are stored.
CREATE TABLE api_sessions (
    token_hash  bytea PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('session', 'ticket')),
    user_name   text NOT NULL,
    xsrf_hash   bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX api_sessions_expires ON api_sessions (expires_at);

-- Idempotency-Key per caller: the first request's body digest and the task it created.
-- state 'pending' while the command is being published, 'done' once the broker confirmed it.
CREATE TABLE idempotency_keys (
    principal     text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    task_id       bigint REFERENCES batch_tasks (id) ON DELETE SET NULL,
    locked_at     timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- StopBatchJob: who stopped a task and when (the task ends as Failed, see docs/api.md).
ALTER TABLE batch_tasks ADD COLUMN stopped_at timestamptz;
ALTER TABLE batch_tasks ADD COLUMN stopped_by text;
