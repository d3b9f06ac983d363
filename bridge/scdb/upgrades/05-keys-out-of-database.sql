-- v4 -> v5: Transcript keys move out of the database (network.key_dir)
-- No release ever shipped with keys in the database; a development database
-- loses the guest-side history of its open conversations here, nothing else.
DROP TABLE sikkerchat_conversation_key;
