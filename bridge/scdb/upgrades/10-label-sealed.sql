-- v9 -> v10: The officer's label is kept only sealed with the conversation key
-- The label may name a person; in plain text it would outlive the close (and,
-- in a database's free pages, the purge). Labels of conversations from before
-- this version are dropped: the room name and the guest's display name still
-- show them until the room is purged.
ALTER TABLE sikkerchat_conversation ADD COLUMN label_sealed bytea;
ALTER TABLE sikkerchat_conversation DROP COLUMN label;
