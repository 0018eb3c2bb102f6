-- Continuous sync overlap: a run re-reads the last `sync_overlap` seconds before the watermark
-- (a change committed late, stamped behind the watermark, is found there). The actors already
-- handled in that window, key -> the position they were handled at, so a re-read of an
-- unchanged actor is dropped and only a late-committed one is queued; `recent_window`: the
-- seconds before `since` they cover. NULL: not recorded (no overlap so far): the first re-read
-- takes what it finds behind the covered part as handled.
ALTER TABLE sync_watermarks ADD COLUMN recent jsonb,
    ADD COLUMN recent_window double precision NOT NULL DEFAULT 0;
