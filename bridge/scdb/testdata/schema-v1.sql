-- v0 -> v1: Latest revision

-- One row per conversation (a bridgev2 portal). No message content lives here.
CREATE TABLE sikkerchat_conversation (
    id                TEXT    NOT NULL PRIMARY KEY,
    room_id           TEXT    UNIQUE,
    ghost_id          TEXT    NOT NULL,
    label             TEXT    NOT NULL DEFAULT '',
    status            TEXT    NOT NULL,
    created_by        TEXT    NOT NULL,
    created_at        BIGINT  NOT NULL,
    invite_expires_at BIGINT  NOT NULL,
    joined_at         BIGINT,
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

-- The per-conversation transcript key, wrapped by the master key. Deleting the
-- row crypto-shreds the conversation's guest-side transcript.
CREATE TABLE sikkerchat_conversation_key (
    conversation_id TEXT  NOT NULL PRIMARY KEY REFERENCES sikkerchat_conversation (id) ON DELETE CASCADE,
    wrapped_key     bytea NOT NULL
);

-- What the guest page shows: sealed with the conversation key (AES-256-GCM).
CREATE TABLE sikkerchat_transcript (
    conversation_id TEXT   NOT NULL REFERENCES sikkerchat_conversation (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    direction       TEXT   NOT NULL,
    matrix_event_id TEXT,
    created_at      BIGINT NOT NULL,
    sealed          bytea  NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    CONSTRAINT sikkerchat_transcript_event_unique UNIQUE (conversation_id, matrix_event_id)
);
