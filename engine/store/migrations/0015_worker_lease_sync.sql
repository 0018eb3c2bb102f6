-- Whether the worker holding the lease runs the continuous sync ([sync] enabled in its own
-- configuration): GetEngineStatus, SyncAll and ForceSyncAll answer from the live workers, not
-- from the configuration of whichever process serves the API. A worker of an older version
-- never sets it: it counts as a worker that does not run the sync.
ALTER TABLE worker_leases ADD COLUMN runs_sync boolean NOT NULL DEFAULT false;
