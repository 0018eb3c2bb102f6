-- Publishing services find the task their message became by CorrelationId (issue 20).
CREATE INDEX batch_tasks_correlation ON batch_tasks (correlation_id) WHERE correlation_id IS NOT NULL;
