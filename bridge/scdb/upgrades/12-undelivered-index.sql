-- v11 -> v12: The undelivered-messages index leads with the conversation
-- The outbox asks for one conversation's undelivered messages in order at
-- every wake; with an index on status alone SQLite walked the whole
-- conversation instead, one row per message ever sent (the guest's send
-- path spent two thirds of its time there).
DROP INDEX sikkerchat_transcript_undelivered_idx;
CREATE INDEX sikkerchat_transcript_undelivered_idx ON sikkerchat_transcript (conversation_id, seq) WHERE status='stored';
