-- v1 -> v2: Guest sessions and guest message delivery
ALTER TABLE sikkerchat_conversation ADD COLUMN officer_read_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sikkerchat_transcript ADD COLUMN client_id TEXT;
ALTER TABLE sikkerchat_transcript ADD COLUMN status TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX sikkerchat_transcript_client_unique ON sikkerchat_transcript (conversation_id, client_id);
CREATE INDEX sikkerchat_transcript_undelivered_idx ON sikkerchat_transcript (status) WHERE status='stored';
CREATE TABLE sikkerchat_guest_session (
    token_hash      bytea  NOT NULL PRIMARY KEY,
    conversation_id TEXT   NOT NULL REFERENCES sikkerchat_conversation (id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    revoked_at      BIGINT
);
CREATE INDEX sikkerchat_guest_session_conversation_idx ON sikkerchat_guest_session (conversation_id);
