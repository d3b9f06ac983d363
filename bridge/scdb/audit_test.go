package scdb

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAuditHasFindsOnlyTheExactRow(t *testing.T) {
	db := newTestDB(t)
	has, err := db.Audit.Has(ctx, "", "identity_changed", "@a:x", "master key K1")
	require.NoError(t, err)
	require.False(t, has, "an empty trail has nothing")
	require.NoError(t, db.Audit.Insert(ctx, &AuditRow{Seq: 1, At: ms(time.Now()), Actor: "@a:x", Action: "identity_changed",
		Detail: "master key K1", PrevHash: []byte{0}, Hash: []byte{1}}))
	for _, c := range []struct {
		conv, action, actor, detail string
		want                        bool
	}{
		{"", "identity_changed", "@a:x", "master key K1", true},
		{"", "identity_changed", "@a:x", "master key K2", false},
		{"", "identity_changed", "@b:x", "master key K1", false},
		{"", "identity_trusted", "@a:x", "master key K1", false},
		{"c1", "identity_changed", "@a:x", "master key K1", false},
	} {
		has, err = db.Audit.Has(ctx, c.conv, c.action, c.actor, c.detail)
		require.NoError(t, err)
		require.Equal(t, c.want, has, "%+v", c)
	}
}
