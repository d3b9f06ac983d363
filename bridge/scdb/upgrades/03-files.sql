-- v2 -> v3: Sealed file contents for the guest page
CREATE TABLE sikkerchat_file (
    conversation_id TEXT   NOT NULL REFERENCES sikkerchat_conversation (id) ON DELETE CASCADE,
    file_id         TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    sealed          bytea  NOT NULL,
    PRIMARY KEY (conversation_id, file_id)
);
