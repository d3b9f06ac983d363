-- v12 -> v13: The patrol inbox keeps order per person, not across people
-- A delivery's events are split into lanes, one per person: a lane waits
-- for its first event (in order), lanes never wait for each other. A lane's
-- event is retried with a backoff and given up after a bounded number of its
-- own failures (the room is told), so one attachment no longer holds back
-- everyone who writes after it.
CREATE TABLE sikkerchat_meta_event (
    id              TEXT    NOT NULL PRIMARY KEY,
    -- HMAC of the platform, account and person with the inbox key.
    lane            TEXT    NOT NULL,
    -- The delivery's arrival (nanoseconds) and the event's place in it.
    arrival         BIGINT  NOT NULL,
    position        INTEGER NOT NULL,
    -- waiting, held (for the page's budget of new rooms), given_up (the room is still to be told)
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    tries           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL DEFAULT 0,
    last_attempt_at BIGINT  NOT NULL DEFAULT 0,
    sealed          bytea   NOT NULL
);
CREATE INDEX sikkerchat_meta_event_lane_idx ON sikkerchat_meta_event (lane, arrival, position);
-- The lanes' first events in order of arrival, and the next one due.
CREATE INDEX sikkerchat_meta_event_arrival_idx ON sikkerchat_meta_event (arrival, position);
CREATE INDEX sikkerchat_meta_event_due_idx ON sikkerchat_meta_event (next_attempt_at);

-- A keyed digest of every webhook body kept, for Meta's retry window: the
-- same body again (Meta's retry after a lost answer, or a replay) is
-- answered and not kept twice.
CREATE TABLE sikkerchat_meta_seen (
    digest  bytea  NOT NULL PRIMARY KEY,
    -- Arrival (nanoseconds).
    seen_at BIGINT NOT NULL
);
CREATE INDEX sikkerchat_meta_seen_at_idx ON sikkerchat_meta_seen (seen_at);

-- A page's budget of new rooms counts the rooms made in a window.
CREATE INDEX sikkerchat_social_created_idx ON sikkerchat_social (account_id, created_at);

-- Attempts are counted per event now.
ALTER TABLE sikkerchat_meta_delivery DROP COLUMN attempts;
