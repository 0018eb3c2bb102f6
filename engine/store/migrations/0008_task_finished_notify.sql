-- A task reaching a final state notifies channel erpsync_task_finished (payload: the task id),
-- whichever statement finished it (finish, fail, stop, a failed publish): the synchronous
-- ForceResync endpoints wait on it (issue 17). Sent at commit; nobody listening costs nothing.
CREATE FUNCTION erpsync_notify_task_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('erpsync_task_finished', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER batch_tasks_finished_notify
    AFTER UPDATE OF state ON batch_tasks
    FOR EACH ROW
    WHEN (NEW.state IN ('Succeeded', 'Failed', 'SucceededManualCleanup')
          AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION erpsync_notify_task_finished();
