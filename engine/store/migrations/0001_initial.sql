-- erpsync state: links between CRM records and ERP actors, batch tasks, outcomes, sync log.

-- One row per CRM record that takes part in sync (SuperOffice ErpInternalKey).
CREATE TABLE internal_keys (
    id                     bigserial PRIMARY KEY,
    crm_actor_type         text NOT NULL,
    crm_record_id          text NOT NULL,
    most_recent_timestamp  text,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    UNIQUE (crm_actor_type, crm_record_id)
);

-- A link of an internal key to one actor on one connection (SuperOffice ErpExternalKey).
CREATE TABLE external_keys (
    id               bigserial PRIMARY KEY,
    internal_key_id  bigint NOT NULL REFERENCES internal_keys (id) ON DELETE CASCADE,
    connection_id    integer NOT NULL CHECK (connection_id > 0),
    erp_actor_type   text NOT NULL,
    erp_key          text NOT NULL,
    last_modified    text,          -- the actor's LastModified as its connector last reported it
    last_synced_at   timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (connection_id, internal_key_id),               -- one actor per record and connection
    UNIQUE (connection_id, erp_actor_type, erp_key)        -- one record per actor and connection
);
CREATE INDEX external_keys_internal_key ON external_keys (internal_key_id);

-- Batch tasks, named and staged like SuperOffice's BatchTask.
CREATE TABLE batch_tasks (
    id                    bigserial PRIMARY KEY,
    name                  text NOT NULL,
    state                 text NOT NULL DEFAULT 'New' CHECK (state IN
                            ('Unknown', 'New', 'Aquired', 'Started', 'Succeeded', 'Failed',
                             'SucceededManualCleanup')),
    source_connection_id  integer NOT NULL,
    request               jsonb NOT NULL,
    response              text NOT NULL DEFAULT '',
    description           text NOT NULL DEFAULT '',
    progress_percent      smallint NOT NULL DEFAULT 0,
    progress_description  text NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL DEFAULT now(),
    last_started_at       timestamptz,
    heartbeat_at          timestamptz,
    finished_at           timestamptz,
    start_count           integer NOT NULL DEFAULT 0,
    message_id            text UNIQUE,
    correlation_id        text,
    total_records         bigint,
    done_records          bigint NOT NULL DEFAULT 0,
    unknown_keys          bigint NOT NULL DEFAULT 0,
    writes_updated        bigint NOT NULL DEFAULT 0,
    writes_unchanged      bigint NOT NULL DEFAULT 0,
    writes_created        bigint NOT NULL DEFAULT 0,
    writes_failed         bigint NOT NULL DEFAULT 0,
    fields_changed        bigint NOT NULL DEFAULT 0,
    planned               boolean NOT NULL DEFAULT false,
    total_chunks          integer NOT NULL DEFAULT 0,
    done_chunks           integer NOT NULL DEFAULT 0
);
CREATE INDEX batch_tasks_name_state ON batch_tasks (name, state);

-- The planner's split of a task into chunk messages; a chunk is committed exactly once.
CREATE TABLE task_chunks (
    task_id           bigint NOT NULL REFERENCES batch_tasks (id) ON DELETE CASCADE,
    chunk_no          integer NOT NULL,
    internal_key_ids  bigint[] NOT NULL,
    state             text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
    done_at           timestamptz,
    PRIMARY KEY (task_id, chunk_no)
);

-- What happened to each record on each connection within a task.
CREATE TABLE record_outcomes (
    id               bigserial PRIMARY KEY,
    task_id          bigint NOT NULL REFERENCES batch_tasks (id) ON DELETE CASCADE,
    internal_key_id  bigint NOT NULL,
    connection_id    integer,          -- NULL when the internal key itself is unknown
    status           text NOT NULL,
    changed_fields   integer NOT NULL DEFAULT 0,
    error            text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX record_outcomes_task ON record_outcomes (task_id, connection_id, status);

-- Every field value the engine actually changed (SuperOffice ErpSyncLog).
CREATE TABLE sync_log (
    id               bigserial PRIMARY KEY,
    task_id          bigint REFERENCES batch_tasks (id) ON DELETE SET NULL,
    connection_id    integer NOT NULL,  -- the ERP connection on the other side of the change
    internal_key_id  bigint NOT NULL,
    external_key_id  bigint,
    erp_actor_type   text NOT NULL,
    erp_field        text NOT NULL,
    crm_field        text NOT NULL,
    target_is_crm    boolean NOT NULL,
    direction        text NOT NULL CHECK (direction IN ('to_crm', 'to_erp')),
    old_value        text,
    new_value        text,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_log_task ON sync_log (task_id);
CREATE INDEX sync_log_internal_key ON sync_log (internal_key_id);

-- Commands already handled, for deduplicating redelivered or republished messages.
CREATE TABLE processed_messages (
    message_id    text PRIMARY KEY,
    task_id       bigint,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
