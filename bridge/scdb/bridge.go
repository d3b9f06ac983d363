package scdb

import (
	"context"
	"fmt"

	"go.mau.fi/util/dbutil"
	"maunium.net/go/mautrix/id"
)

// BridgeQuery is what sikkerchat removes from bridgev2's and mautrix's own
// tables once a room is purged: its copies of the room's keys and state, and
// the guest's ghost (whose name may be the officer's label).
type BridgeQuery struct {
	db *dbutil.Database
}

var forgetRoomQueries = []string{
	`DELETE FROM crypto_megolm_inbound_session WHERE room_id=$1`,
	`DELETE FROM crypto_megolm_outbound_session WHERE room_id=$1`,
	`DELETE FROM mx_room_state WHERE room_id=$1`,
	`DELETE FROM mx_user_profile WHERE room_id=$1`,
}

const deleteGhostQuery = `DELETE FROM ghost WHERE bridge_id=$1 AND id=$2`

// ForgetRoom drops the keys and cached state of a purged room.
func (bq *BridgeQuery) ForgetRoom(ctx context.Context, roomID id.RoomID) error {
	for _, q := range forgetRoomQueries {
		if _, err := bq.db.Exec(ctx, q, roomID); err != nil {
			return fmt.Errorf("failed to drop bridge data of purged room: %w", err)
		}
	}
	return nil
}

// DeleteGhost drops a ghost row.
func (bq *BridgeQuery) DeleteGhost(ctx context.Context, bridgeID, ghostID string) error {
	_, err := bq.db.Exec(ctx, deleteGhostQuery, bridgeID, ghostID)
	return err
}

// Compact makes SQLite forget deleted content in its write-ahead log too:
// the log still holds pages as they were until it is checkpointed and cut
// back. (The database itself overwrites what is deleted: secure_delete.)
func (bq *BridgeQuery) Compact(ctx context.Context) error {
	if bq.db.Dialect != dbutil.SQLite {
		return nil
	}
	_, err := bq.db.Exec(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return err
}
