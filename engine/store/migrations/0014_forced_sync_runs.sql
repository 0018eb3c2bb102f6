-- ForceSyncAll (SuperOffice: "sync all active connections even when automatic sync is off"):
-- a connection's next run is claimed now even while the engine is stopped, once.
ALTER TABLE sync_connections ADD COLUMN forced_run boolean NOT NULL DEFAULT false;
