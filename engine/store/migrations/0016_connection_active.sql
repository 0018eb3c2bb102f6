-- ToggleErpConnectionActive: whether a configured connection takes part in the sync. The
-- connections themselves are configured (TOML), so only the override is stored here, with who
-- changed it and when; a connection without a row is active. An inactive connection is not run
-- by the continuous sync, SyncAll or ForceSyncAll, is not a resync's source and is not pushed to.
CREATE TABLE connection_states (
    connection_id  integer     PRIMARY KEY CHECK (connection_id > 0),  -- the CRM (0) has none
    active         boolean     NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    changed_by     text
);
