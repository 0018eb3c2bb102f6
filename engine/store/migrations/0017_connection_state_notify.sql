-- A change of connection_states notifies channel erpsync_connection_state, whatever statement made
-- it (ToggleErpConnectionActive, erpsync connectors, an operator's psql), with the connection's
-- state after it: {"connection_id": 1, "active": false} (a deleted row: active again). Every API
-- process listens and updates its inactive set at once (engine/api/active.py). A truncate sends
-- {} (re-read everything). Sent at commit; nobody listening costs nothing.
CREATE FUNCTION erpsync_notify_connection_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('erpsync_connection_state', '{}');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('erpsync_connection_state',
                          json_build_object('connection_id', OLD.connection_id,
                                            'active', true)::text);
    ELSE
        PERFORM pg_notify('erpsync_connection_state',
                          json_build_object('connection_id', NEW.connection_id,
                                            'active', NEW.active)::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER connection_states_notify
    AFTER INSERT OR UPDATE OR DELETE ON connection_states
    FOR EACH ROW EXECUTE FUNCTION erpsync_notify_connection_state();

CREATE TRIGGER connection_states_truncate_notify
    AFTER TRUNCATE ON connection_states
    FOR EACH STATEMENT EXECUTE FUNCTION erpsync_notify_connection_state();
