-- A link broken on purpose (BreakActorLink): the record stays out of that connection's syncs,
-- "resync all" included, and no resync creates a new actor for it there (create_missing), until
-- it is linked again (CreateActorLink, ConnectActor, CreateErpActorFromCrm delete the row).
-- The external_keys row itself is deleted, so the ERP actor is free to link elsewhere; this
-- row keeps who broke which link when, for the views and the dashboard.
CREATE TABLE broken_links (
    connection_id    integer     NOT NULL CHECK (connection_id > 0),
    internal_key_id  bigint      NOT NULL REFERENCES internal_keys (id) ON DELETE CASCADE,
    erp_actor_type   text        NOT NULL,
    erp_key          text        NOT NULL,
    broken_by        text        NOT NULL,
    broken_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, internal_key_id)
);
CREATE INDEX broken_links_internal_key ON broken_links (internal_key_id);
