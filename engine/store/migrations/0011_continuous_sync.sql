-- Continuous (incremental) sync: the engine's status and interval, one schedule row per
-- connection (the claim that makes each run happen once per interval across all processes),
-- one watermark per connection and actor type, and the CRM values as of the last sync (echo
-- suppression and the conflict rule's baseline).

CREATE TABLE sync_engine (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),   -- one row
    status      text        NOT NULL CHECK (status IN ('running', 'stopped')),
    interval_s  double precision NOT NULL CHECK (interval_s > 0),
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changed_by  text
);

CREATE TABLE sync_connections (
    connection_id   integer     PRIMARY KEY,
    next_run_at     timestamptz NOT NULL DEFAULT now(),
    run_by          text,                 -- worker holding the current run (NULL: none)
    run_until       timestamptz,          -- its claim expires then (a dead worker's run is retaken)
    run_started_at  timestamptz,
    last_run_at     timestamptz,          -- when the last run ended
    last_run_by     text,                 -- the worker that ran it
    caught_up_at    timestamptz,          -- start of the last run that read every change: the
                                          -- changes made before it are all queued (lag = now - it)
    last_outcome    text,                 -- ok | failed | skipped
    last_error      text,
    last_changed    integer     NOT NULL DEFAULT 0,   -- actors reported changed by the last run
    last_queued     integer     NOT NULL DEFAULT 0,   -- records sent through the chunk path
    last_echoes     integer     NOT NULL DEFAULT 0,   -- skipped: nothing new (erpsync's own write)
    last_unlinked   integer     NOT NULL DEFAULT 0,   -- changed actors without an internal key
    runs            bigint      NOT NULL DEFAULT 0,
    full_sync_requested boolean NOT NULL DEFAULT false  -- ForceSyncAll: next run starts over
);

CREATE TABLE sync_watermarks (
    connection_id  integer NOT NULL,
    actor_type     text    NOT NULL,
    since          text,                             -- last_modified the connector reported
    seen_keys      text[]  NOT NULL DEFAULT '{}',    -- actors at exactly `since` already done
    moved_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, actor_type)
);

-- The mapped CRM values of a record as of its last sync through erpsync (written with the
-- change that put them there): a CRM change equal to them is erpsync's own write, and a field
-- that differs from them changed in the CRM since the last sync.
CREATE TABLE sync_crm_values (
    internal_key_id bigint PRIMARY KEY,
    vals            jsonb  NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Per connection and record: the CRM-field values the CRM and that connection last agreed on
-- (written by every chunk commit while the continuous sync is enabled). A field whose value on
-- one side differs from it changed there since their last sync: the conflict rule's input.
CREATE TABLE sync_baseline (
    connection_id   integer NOT NULL,
    internal_key_id bigint  NOT NULL,
    vals            jsonb   NOT NULL,
    PRIMARY KEY (connection_id, internal_key_id)
);

-- The batch tasks of the incremental sync, by source, still to be published.
CREATE INDEX batch_tasks_sync_new ON batch_tasks (source_connection_id)
    WHERE name = 'Sync' AND state = 'New';

-- Conflict outcomes in the sync log: which side won a field changed on both sides.
ALTER TABLE sync_log ADD COLUMN conflict_winner text;
