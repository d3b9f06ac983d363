-- v7 -> v8: Left-over officers' events are handled again in the order they arrived
-- Events of one transaction share received_at (milliseconds); arrival orders
-- them as the homeserver sent them (nanoseconds of arrival plus the position
-- in the transaction). Rows from v7 keep 0 and come first, by received_at.
ALTER TABLE sikkerchat_inbox ADD COLUMN arrival BIGINT NOT NULL DEFAULT 0;
