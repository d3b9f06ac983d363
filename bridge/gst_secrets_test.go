package bridge_test

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// gstLogBuffer collects log lines written from several goroutines.
type gstLogBuffer struct {
	lock sync.Mutex
	buf  bytes.Buffer
}

func (b *gstLogBuffer) Write(p []byte) (int, error) {
	b.lock.Lock()
	defer b.lock.Unlock()
	return b.buf.Write(p)
}

func (b *gstLogBuffer) String() string {
	b.lock.Lock()
	defer b.lock.Unlock()
	return b.buf.String()
}

// Everything the guest side does, at the most verbose log level, logs no
// token, code word, session cookie, message text or file name: only
// conversation IDs and what happened.
func TestGuestSideLogsNoSecretsAndNoContent(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	logs := &gstLogBuffer{}
	ctx := zerolog.New(logs).Level(zerolog.TraceLevel).WithContext(tb.ctx)
	inv := tb.newInvite(time.Hour)
	const text, fileName, wrongCode = "MARKØR-hemmelig-tekst", "MARKØR-filnavn.png", "feilord 77"

	_, _, err := tb.Guests.Join(ctx, inv.token, wrongCode)
	require.Error(t, err)
	session, conv, err := tb.Guests.Join(ctx, inv.token, inv.code)
	require.NoError(t, err)
	_, _, err = tb.Guests.CheckSession(ctx, session)
	require.NoError(t, err)
	_, _, err = tb.Guests.QueueText(ctx, conv, gstClientID("log1"), text)
	require.NoError(t, err)
	_, _, err = tb.Guests.QueueFile(ctx, conv, gstClientID("log2"), fileName, "image/png", gstPNG)
	require.NoError(t, err)
	_, _, err = tb.Guests.QueueFile(ctx, conv, gstClientID("log2"), fileName, "image/png", gstPNG) // a resend
	require.NoError(t, err)
	_, _, err = tb.Guests.QueueFile(ctx, conv, gstClientID("log3"), fileName, "application/pdf", gstPNG)
	require.ErrorIs(t, err, bridge.ErrFileTypeClaim)
	tb.Guests.Typing(ctx, conv, true)
	require.NoError(t, tb.Guests.Read(ctx, conv, 1))

	// Deliveries that fail, then one refused for good, then the rest.
	tb.gstSetFailing(true)
	require.True(t, tb.Outbox.RunOnce(ctx))
	tb.gstSetFailing(false)
	tb.matrix.Lock()
	tb.matrix.Refuse = text
	tb.matrix.Unlock()
	require.False(t, tb.Outbox.RunOnce(ctx))
	require.NoError(t, tb.Guests.EndSession(ctx, session))
	gstEventually(t, func() bool { _, n := tb.matrix.Snapshot(); return len(n) >= 2 }, "join and undeliverable notices")

	out := logs.String()
	require.Contains(t, out, "Guest joined", "the log was captured")
	require.Contains(t, out, inv.conv.ID, "conversation IDs are logged")
	for what, secret := range map[string]string{
		"invite token": inv.token, "code word": inv.code, "code word, normalised": bridge.NormalizeCode(inv.code),
		"wrong code word": wrongCode, "session cookie": session, "message text": "MARKØR", "file name": fileName,
	} {
		require.NotContains(t, out, secret, "the log has the %s", what)
	}
}

// What the guest sent and what lets anyone in is never in the database in
// clear: not the text, the file's bytes or its name while they wait for
// delivery, not the link's token, the code word or the session cookie.
func TestGuestSecretsAndContentAreNotInTheDatabase(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	session := tb.join(inv)
	conv := tb.conv(inv.conv.ID)
	picture := append(bytes.Clone(gstPNG), []byte("MARKØR-bildeinnhold")...)
	_, _, err := tb.Guests.QueueText(tb.ctx, conv, gstClientID("rest1"), "MARKØR-melding fra gjesten")
	require.NoError(t, err)
	_, _, err = tb.Guests.QueueFile(tb.ctx, conv, gstClientID("rest2"), "MARKØR-navn.png", "image/png", picture)
	require.NoError(t, err)
	secrets := map[string]string{"content": "MARKØR", "token": inv.token, "code word": bridge.NormalizeCode(inv.code), "session cookie": session}

	// Every sealed or hashed column, on both databases.
	for _, query := range []string{
		`SELECT sealed FROM sikkerchat_transcript`, `SELECT sealed FROM sikkerchat_file_chunk`, `SELECT sealed FROM sikkerchat_file`,
		`SELECT token_hash FROM sikkerchat_guest_session`, `SELECT token_hash FROM sikkerchat_invite`, `SELECT code_mac FROM sikkerchat_invite`,
	} {
		rows, err := tb.DB.Query(tb.ctx, query)
		require.NoError(t, err)
		for rows.Next() {
			var value []byte
			require.NoError(t, rows.Scan(&value))
			for what, secret := range secrets {
				require.False(t, bytes.Contains(value, []byte(secret)), "%s: %s in clear", query, what)
			}
		}
		require.NoError(t, rows.Close())
	}
	// And the whole database file, write-ahead log included (SQLite).
	if tb.sqlitePath == "" {
		return
	}
	_, err = tb.DB.Exec(tb.ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	require.NoError(t, err)
	for _, path := range []string{tb.sqlitePath, tb.sqlitePath + "-wal"} {
		data, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		for what, secret := range secrets {
			require.False(t, bytes.Contains(data, []byte(secret)), "%s has the %s", path, what)
		}
	}
}
