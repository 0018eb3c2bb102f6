-- The per-record tables are append-only logs written by binary COPY from many concurrent chunk
-- commits of the same task. A foreign key to batch_tasks makes every copied row take a
-- FOR KEY SHARE lock on the one task row; concurrent commits then share that row through
-- MultiXacts whose member lists grow with every locker, and the commits queue on
-- MultiXactMemberSLRU (measured in the 1,000,000-record benchmark, docs/benchmarks.md).
-- The task id stays in each row (indexed for reports); a deleted task leaves its log behind,
-- which is what an audit trail should do.
ALTER TABLE record_outcomes DROP CONSTRAINT IF EXISTS record_outcomes_task_id_fkey;
ALTER TABLE sync_log DROP CONSTRAINT IF EXISTS sync_log_task_id_fkey;
