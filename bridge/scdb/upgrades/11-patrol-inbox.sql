-- v10 -> v11: The patrol inbox: Meta webhook deliveries, social conversations, their events and outbox

-- Webhook deliveries from Meta (the patrol inbox), kept from their arrival
-- until every event in them is handled. The body is sealed with the inbox key.
CREATE TABLE sikkerchat_meta_delivery (
    id          TEXT    NOT NULL PRIMARY KEY,
    -- Order of arrival (nanoseconds).
    arrival     BIGINT  NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    sealed      bytea   NOT NULL
);
CREATE INDEX sikkerchat_meta_delivery_arrival_idx ON sikkerchat_meta_delivery (arrival);

-- One row per social conversation: a person writing to one of the unit's
-- Pages or Instagram accounts. The person's ID and name only sealed with the
-- conversation key; the lookup from Meta's events goes through an HMAC of the
-- ID, dropped at close (a new message then opens a new conversation).
CREATE TABLE sikkerchat_social (
    id                  TEXT    NOT NULL PRIMARY KEY,
    platform            TEXT    NOT NULL,
    account_id          TEXT    NOT NULL,
    person_hash         bytea,
    person_sealed       bytea,
    name_sealed         bytea,
    room_id             TEXT    UNIQUE,
    ghost_id            TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    last_inbound_at     BIGINT  NOT NULL DEFAULT 0,
    closed_at           BIGINT,
    purge_after         BIGINT,
    hold                BOOLEAN NOT NULL DEFAULT false,
    linked_conversation TEXT
);
CREATE UNIQUE INDEX sikkerchat_social_person_idx ON sikkerchat_social (account_id, person_hash);

-- Meta events of a social conversation, by ID only (the mid, or a digest for
-- reads and deliveries): de-duplication, and the Matrix event of a message for
-- replies, edits and read marks. No content.
CREATE TABLE sikkerchat_social_event (
    event_id        TEXT    NOT NULL PRIMARY KEY,
    social_id       TEXT    NOT NULL REFERENCES sikkerchat_social (id) ON DELETE CASCADE,
    direction       TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    matrix_event_id TEXT,
    at              BIGINT  NOT NULL,
    done            BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX sikkerchat_social_event_at_idx ON sikkerchat_social_event (social_id, at);
CREATE INDEX sikkerchat_social_event_matrix_idx ON sikkerchat_social_event (social_id, matrix_event_id);

-- What officers send to the person (and the link and code word of a move to
-- a secure conversation), waiting for the Send API; sealed with the
-- conversation key. state: queued, sending (a call may have reached Meta),
-- sent, failed.
CREATE TABLE sikkerchat_social_outbox (
    social_id       TEXT    NOT NULL REFERENCES sikkerchat_social (id) ON DELETE CASCADE,
    seq             BIGINT  NOT NULL,
    source_id       TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL,
    message_id      TEXT,
    sealed          bytea   NOT NULL,
    PRIMARY KEY (social_id, seq),
    CONSTRAINT sikkerchat_social_outbox_source_unique UNIQUE (social_id, source_id)
);
CREATE INDEX sikkerchat_social_outbox_state_idx ON sikkerchat_social_outbox (state) WHERE state IN ('queued', 'sending');
