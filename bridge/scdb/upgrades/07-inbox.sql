-- v6 -> v7: Officers' events are durable before the homeserver is answered
-- An officer's encrypted event for a conversation room, kept from the moment its
-- appservice transaction arrives until the guest side has it. Left-overs are
-- handled again at start-up. The event is Megolm ciphertext, as on the homeserver.
CREATE TABLE sikkerchat_inbox (
    event_id    TEXT   NOT NULL PRIMARY KEY,
    room_id     TEXT   NOT NULL,
    event       TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
