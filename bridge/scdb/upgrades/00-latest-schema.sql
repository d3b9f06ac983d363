-- v0 -> v13: Latest revision

-- One row per conversation (a bridgev2 portal). No message content lives here.
CREATE TABLE sikkerchat_conversation (
    id                TEXT    NOT NULL PRIMARY KEY,
    room_id           TEXT    UNIQUE,
    ghost_id          TEXT    NOT NULL,
    -- The officer's label, sealed with the conversation key (gone at close).
    label_sealed      bytea,
    status            TEXT    NOT NULL,
    created_by        TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    invite_expires_at BIGINT  NOT NULL,
    joined_at         BIGINT,
    officer_read_seq  BIGINT  NOT NULL DEFAULT 0,
    closed_at         BIGINT,
    purge_after       BIGINT,
    hold              BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX sikkerchat_conversation_created_by_idx ON sikkerchat_conversation (created_by, status);

-- Invite links. Only the SHA-256 of the token is stored, and the code word only
-- as an HMAC keyed with the token, so a copy of the database cannot be used to
-- join or to guess code words offline.
CREATE TABLE sikkerchat_invite (
    token_hash      bytea   NOT NULL PRIMARY KEY,
    conversation_id TEXT    NOT NULL REFERENCES sikkerchat_conversation (id) ON DELETE CASCADE,
    code_mac        bytea   NOT NULL,
    created_at      BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    used_at         BIGINT,
    revoked_at      BIGINT,
    failed_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sikkerchat_invite_conversation_idx ON sikkerchat_invite (conversation_id);

-- What the guest page shows: sealed with the conversation key (AES-256-GCM).
CREATE TABLE sikkerchat_transcript (
    conversation_id TEXT   NOT NULL REFERENCES sikkerchat_conversation (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    direction       TEXT   NOT NULL,
    matrix_event_id TEXT,
    -- The guest's own ID for a message they sent: makes their retries idempotent.
    client_id       TEXT,
    -- from_guest delivery: stored (not yet in the room) or delivered.
    status          TEXT   NOT NULL DEFAULT '',
    created_at      BIGINT NOT NULL,
    sealed          bytea  NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    CONSTRAINT sikkerchat_transcript_event_unique UNIQUE (conversation_id, matrix_event_id),
    CONSTRAINT sikkerchat_transcript_client_unique UNIQUE (conversation_id, client_id)
);
CREATE INDEX sikkerchat_transcript_undelivered_idx ON sikkerchat_transcript (conversation_id, seq) WHERE status='stored';

-- Guest browser sessions. Only the SHA-256 of the cookie value is stored.
CREATE TABLE sikkerchat_guest_session (
    token_hash      bytea  NOT NULL PRIMARY KEY,
    conversation_id TEXT   NOT NULL REFERENCES sikkerchat_conversation (id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX sikkerchat_guest_session_conversation_idx ON sikkerchat_guest_session (conversation_id);

-- File contents the guest page needs (sent by the guest and not yet handed to
-- the homeserver, or sent by an officer for the guest to download), sealed
-- with the conversation key like the transcript.
-- A file row is the header (size, and the number of chunks: -1 while an upload
-- is still coming in, 0 for a file whose whole contents are in sealed, as files
-- of schema v8 and before); each chunk is sealed on its own.
CREATE TABLE sikkerchat_file (
    conversation_id TEXT    NOT NULL REFERENCES sikkerchat_conversation (id) ON DELETE CASCADE,
    file_id         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    sealed          bytea   NOT NULL,
    chunks          INTEGER NOT NULL DEFAULT 0,
    size            BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, file_id)
);
CREATE TABLE sikkerchat_file_chunk (
    conversation_id TEXT    NOT NULL,
    file_id         TEXT    NOT NULL,
    idx             INTEGER NOT NULL,
    sealed          bytea   NOT NULL,
    PRIMARY KEY (conversation_id, file_id, idx),
    FOREIGN KEY (conversation_id, file_id) REFERENCES sikkerchat_file (conversation_id, file_id) ON DELETE CASCADE
);

-- The audit trail: append-only and hash-chained (each row's hash covers the
-- previous row's hash and its own fields). No content, ever. It outlives the
-- conversation, so it has no foreign key.
CREATE TABLE sikkerchat_audit (
    seq             BIGINT NOT NULL PRIMARY KEY,
    at              BIGINT NOT NULL,
    actor           TEXT   NOT NULL,
    action          TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    detail          TEXT   NOT NULL DEFAULT '',
    prev_hash       bytea  NOT NULL,
    hash            bytea  NOT NULL
);
CREATE INDEX sikkerchat_audit_conversation_idx ON sikkerchat_audit (conversation_id, seq);

-- Anonymous daily counts for statistics: no identities, no content.
CREATE TABLE sikkerchat_stats_daily (
    day       TEXT   NOT NULL,
    direction TEXT   NOT NULL,
    kind      TEXT   NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (day, direction, kind)
);

-- An officer's encrypted event for a conversation room, kept from the moment its
-- appservice transaction arrives until the guest side has it. Left-overs are
-- handled again at start-up. The event is Megolm ciphertext, as on the homeserver.
CREATE TABLE sikkerchat_inbox (
    event_id    TEXT   NOT NULL PRIMARY KEY,
    room_id     TEXT   NOT NULL,
    event       TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    -- Order of arrival: nanoseconds plus the position in the transaction.
    arrival     BIGINT NOT NULL DEFAULT 0
);

-- Webhook deliveries from Meta (the patrol inbox), kept from their arrival
-- until their events are split into lanes. The body is sealed with the inbox key.
CREATE TABLE sikkerchat_meta_delivery (
    id          TEXT    NOT NULL PRIMARY KEY,
    -- Order of arrival (nanoseconds).
    arrival     BIGINT  NOT NULL,
    sealed      bytea   NOT NULL
);
CREATE INDEX sikkerchat_meta_delivery_arrival_idx ON sikkerchat_meta_delivery (arrival);

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
-- A page's budget of new rooms counts the rooms made in a window.
CREATE INDEX sikkerchat_social_created_idx ON sikkerchat_social (account_id, created_at);

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
