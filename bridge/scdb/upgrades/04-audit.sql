-- v3 -> v4: Hash-chained audit trail
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
