-- v8 -> v9: File contents in sealed chunks, so that uploads and downloads stream
-- A file row is the header: its size and number of chunks (-1 while an upload
-- is still coming in; 0 for a file of v8 and before, whose whole contents are
-- the row's own sealed column). Each chunk is sealed on its own, bound to its
-- file, its position and whether it is the last.
ALTER TABLE sikkerchat_file ADD COLUMN chunks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sikkerchat_file ADD COLUMN size BIGINT NOT NULL DEFAULT 0;
CREATE TABLE sikkerchat_file_chunk (
    conversation_id TEXT    NOT NULL,
    file_id         TEXT    NOT NULL,
    idx             INTEGER NOT NULL,
    sealed          bytea   NOT NULL,
    PRIMARY KEY (conversation_id, file_id, idx),
    FOREIGN KEY (conversation_id, file_id) REFERENCES sikkerchat_file (conversation_id, file_id) ON DELETE CASCADE
);
