package bridge_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// gstPNG is a small picture, real enough for type detection.
var gstPNG = append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), bytes.Repeat([]byte{0x42}, 300)...)

// A guest's text is stored at once (the page shows it as sent), pushed to
// the guest's other open pages, and goes to the room when the outbox runs;
// the page then learns it was delivered.
func TestGuestTextIsStoredThenDelivered(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	page := tb.Hub.Subscribe(inv.conv.ID)
	defer page.Close()

	entry, isNew, err := tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("a"), "  hei, jeg trenger hjelp \r\n\t")
	require.NoError(t, err)
	require.True(t, isNew)
	require.EqualValues(t, 1, entry.Seq)
	require.Equal(t, bridge.EntryStored, entry.Status)
	require.Equal(t, bridge.FromGuest, entry.Direction)
	require.Equal(t, "  hei, jeg trenger hjelp", entry.Text, "trailing blanks go, the guest's indentation stays")
	evt := <-page.C
	require.Equal(t, bridge.GuestEventMessage, evt.Kind)
	require.Equal(t, entry.Text, evt.Entry.Text)
	sent, _ := tb.matrix.Snapshot()
	require.Empty(t, sent, "nothing reaches the room before the outbox runs")

	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	sent, _ = tb.matrix.Snapshot()
	require.Equal(t, []string{"  hei, jeg trenger hjelp"}, sent)
	evt = <-page.C
	require.Equal(t, bridge.GuestEventStatus, evt.Kind)
	require.Equal(t, bridge.EntryDelivered, evt.Entry.Status)
	require.NotEmpty(t, evt.Entry.MatrixEventID)
	stored := tb.gstEntries(inv.conv.ID)
	require.Len(t, stored, 1)
	require.Equal(t, bridge.EntryDelivered, stored[0].Status)
	require.Equal(t, evt.Entry.MatrixEventID, stored[0].MatrixEventID)
	require.Equal(t, 1.0, gstMetric(t, tb.Metrics, "sikkerchat_messages_total", "direction", bridge.DirToRoom, "kind", "text"))
}

// Bad input from the page is refused with its own error and stores nothing.
func TestGuestTextRefusesBadInput(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.Guest.MaxMessageLength = 10
	tb := newTestBridge(t, cfg)
	inv := tb.newInvite(time.Hour)
	for _, tc := range []struct {
		name, clientID, text string
		want                 error
	}{
		{"client_id too short", "kort-id-123", "hei", bridge.ErrBadClientID},
		{"client_id too long", strings.Repeat("a", 65), "hei", bridge.ErrBadClientID},
		{"client_id with a space", "klient id med mellomrom", "hei", bridge.ErrBadClientID},
		{"client_id with a slash", "klient/id/med/skråstrek", "hei", bridge.ErrBadClientID},
		{"client_id with a dot", "sikkerchat.abc.defghijklm", "hei", bridge.ErrBadClientID},
		{"empty", gstClientID("b"), "", bridge.ErrEmptyMessage},
		{"only blanks", gstClientID("c"), " \t\r\n ", bridge.ErrEmptyMessage},
		{"not UTF-8", gstClientID("d"), "hei \xff\xfe", bridge.ErrEmptyMessage},
		{"eleven characters", gstClientID("e"), "ølæøåøæøåøæ", bridge.ErrMessageTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entry, isNew, err := tb.Guests.QueueText(tb.ctx, inv.conv, tc.clientID, tc.text)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, entry)
			require.False(t, isNew)
		})
	}
	require.Zero(t, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_transcript`))

	// The limit counts characters, not bytes, and not the blanks that are cut.
	for i, text := range []string{"ølæøåøæøåø", "0123456789 \n  "} {
		_, isNew, err := tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID(string(rune('f'+i))), text)
		require.NoError(t, err)
		require.True(t, isNew)
	}
	require.Len(t, tb.gstEntries(inv.conv.ID), 2)
}

// A page that sends again (it never saw the answer) with the same
// client_id gets the first message back: stored once, shown once, sent
// once. The same client_id for something else is refused.
func TestResendingWithTheSameClientIDIsIdempotent(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	page := tb.Hub.Subscribe(inv.conv.ID)
	defer page.Close()
	first, isNew, err := tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("same"), "er dere der?")
	require.NoError(t, err)
	require.True(t, isNew)
	again, isNew, err := tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("same"), "er dere der?\n")
	require.NoError(t, err)
	require.False(t, isNew)
	require.Equal(t, first.Seq, again.Seq)
	require.Equal(t, first.Text, again.Text)
	require.Len(t, page.C, 1, "the other pages are told once")

	_, _, err = tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("same"), "noe helt annet")
	require.ErrorIs(t, err, bridge.ErrClientIDReused)
	_, _, err = tb.Guests.QueueFile(tb.ctx, inv.conv, gstClientID("same"), "bilde.png", "image/png", gstPNG)
	require.ErrorIs(t, err, bridge.ErrClientIDReused)
	require.Zero(t, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_file`), "the refused file's bytes are dropped")

	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	_, _, err = tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("same"), "er dere der?")
	require.NoError(t, err, "still answered after delivery")
	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	sent, _ := tb.matrix.Snapshot()
	require.Equal(t, []string{"er dere der?"}, sent)
	require.Len(t, tb.gstEntries(inv.conv.ID), 1)
}

// A guest's file: the type comes from the bytes, the name is made safe for
// it, the hash is of the original bytes, and the bridge drops its sealed
// copy once the room has the file.
func TestGuestFileIsCheckedStoredAndDroppedAfterDelivery(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	entry, isNew, err := tb.Guests.QueueFile(tb.ctx, inv.conv, gstClientID("file"), `C:\Users\meg\skjermbilde.html`, "image/png", gstPNG)
	require.NoError(t, err)
	require.True(t, isNew)
	info, ok := bridge.FileInfoOf(entry)
	require.True(t, ok)
	sum := sha256.Sum256(gstPNG)
	require.Equal(t, "skjermbilde.png", info.Name)
	require.Equal(t, "image/png", info.Mime)
	require.Equal(t, len(gstPNG), info.Size)
	require.Equal(t, hex.EncodeToString(sum[:]), info.SHA256)
	kept, err := tb.Transcript.File(tb.ctx, inv.conv.ID, info.ID)
	require.NoError(t, err)
	require.Equal(t, gstPNG, kept)

	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	tb.matrix.Lock()
	require.Equal(t, []bridge.FileInfo{info}, tb.matrix.Files)
	tb.matrix.Unlock()
	require.Zero(t, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_file`))
	require.Zero(t, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_file_chunk`))
	_, err = tb.Transcript.File(tb.ctx, inv.conv.ID, info.ID)
	require.ErrorIs(t, err, bridge.ErrFileNotFound)
	stored := tb.gstEntries(inv.conv.ID)
	require.Len(t, stored, 1)
	require.Equal(t, bridge.EntryDelivered, stored[0].Status)
	require.Equal(t, "skjermbilde.png", stored[0].Extra["name"], "the page still shows what was sent")
	require.Equal(t, 1.0, gstMetric(t, tb.Metrics, "sikkerchat_messages_total", "direction", bridge.DirToRoom, "kind", "file"))
}

// Files the bridge will not carry are refused before anything is kept.
func TestGuestFileRefusalsLeaveNothingBehind(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	for _, tc := range []struct {
		name, clientID, fileName, claim string
		data                            []byte
		want                            error
	}{
		{"a web page", gstClientID("h"), "side.png", "image/png", []byte("<!DOCTYPE html><script>alert(1)</script>"), bridge.ErrFileTypeRefused},
		{"a Windows program", gstClientID("i"), "bilde.jpg", "", append([]byte("MZ\x90\x00"), make([]byte, 200)...), bridge.ErrFileTypeRefused},
		{"a picture claimed to be a PDF", gstClientID("j"), "a.pdf", "application/pdf", gstPNG, bridge.ErrFileTypeClaim},
		{"a PDF claimed to be a picture", gstClientID("k"), "a.png", "image/png", pdfBytes, bridge.ErrFileTypeClaim},
		{"nothing", gstClientID("l"), "tom.png", "image/png", nil, bridge.ErrFileEmpty},
		{"a bad client_id", "x", "bilde.png", "image/png", gstPNG, bridge.ErrBadClientID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entry, _, err := tb.Guests.QueueFile(tb.ctx, inv.conv, tc.clientID, tc.fileName, tc.claim, tc.data)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, entry)
		})
	}
	// A stored upload whose message is refused is dropped with it.
	up, err := tb.Guests.StoreFile(tb.ctx, inv.conv, "bilde.png", "image/png", bytes.NewReader(gstPNG))
	require.NoError(t, err)
	_, _, err = tb.Guests.QueueStoredFile(tb.ctx, inv.conv, "ugyldig id", up)
	require.ErrorIs(t, err, bridge.ErrBadClientID)
	// And one the page gave up on (the request failed after the bytes were in).
	up, err = tb.Guests.StoreFile(tb.ctx, inv.conv, "bilde.png", "image/png", bytes.NewReader(gstPNG))
	require.NoError(t, err)
	require.Equal(t, 1, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_file`))
	tb.Guests.DiscardFile(tb.ctx, inv.conv, up)

	require.Zero(t, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_file`))
	require.Zero(t, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_file_chunk`))
	require.Zero(t, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_transcript`))
}

// The same file sent again under its client_id is answered with the first
// one and its second copy dropped; other bytes under that client_id are
// refused, also dropped.
func TestResendingAFileIsIdempotent(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	first, isNew, err := tb.Guests.QueueFile(tb.ctx, inv.conv, gstClientID("fil"), "bilde.png", "image/png", gstPNG)
	require.NoError(t, err)
	require.True(t, isNew)
	again, isNew, err := tb.Guests.QueueFile(tb.ctx, inv.conv, gstClientID("fil"), "bilde.png", "image/png", gstPNG)
	require.NoError(t, err)
	require.False(t, isNew)
	require.Equal(t, first.Seq, again.Seq)
	require.Equal(t, first.Extra["file_id"], again.Extra["file_id"])
	other := append(bytes.Clone(gstPNG), 1)
	_, _, err = tb.Guests.QueueFile(tb.ctx, inv.conv, gstClientID("fil"), "bilde.png", "image/png", other)
	require.ErrorIs(t, err, bridge.ErrClientIDReused)
	_, _, err = tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("fil"), "tekst")
	require.ErrorIs(t, err, bridge.ErrClientIDReused)
	require.Equal(t, 1, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_file`), "one copy of the bytes")
	require.Len(t, tb.gstEntries(inv.conv.ID), 1)
	require.False(t, tb.Outbox.RunOnce(tb.ctx))
	tb.matrix.Lock()
	require.Len(t, tb.matrix.Files, 1)
	tb.matrix.Unlock()
}

// Nothing is stored for a closed conversation: text and files are refused
// as "not open", and the bytes of a file are not left behind.
func TestClosedConversationTakesNoMoreFromTheGuest(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	up, err := tb.Guests.StoreFile(tb.ctx, inv.conv, "bilde.png", "image/png", bytes.NewReader(gstPNG))
	require.NoError(t, err)
	require.NoError(t, tb.Conversations.Close(tb.ctx, inv.conv, "@officer:example.org", bridge.CloseByOfficer))
	_, _, err = tb.Guests.QueueText(tb.ctx, inv.conv, gstClientID("m"), "hallo?")
	require.ErrorIs(t, err, bridge.ErrConversationNotOpen)
	_, _, err = tb.Guests.QueueStoredFile(tb.ctx, inv.conv, gstClientID("n"), up)
	require.ErrorIs(t, err, bridge.ErrConversationNotOpen)
	_, err = tb.Guests.StoreFile(tb.ctx, inv.conv, "bilde.png", "image/png", bytes.NewReader(gstPNG))
	require.Error(t, err, "the key is gone: nothing can be sealed")
	require.Zero(t, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_file`))
	require.Zero(t, tb.gstCount(`SELECT COUNT(*) FROM sikkerchat_transcript`))
	sent, _ := tb.matrix.Snapshot()
	require.Empty(t, sent)
}

// Guests get the lower of the configured file limit and the homeserver's
// upload limit, so a file the homeserver would refuse is refused at upload.
func TestGuestFileLimitFollowsTheHomeserver(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.Guest.MaxFileBytes = 4096
	tb := newTestBridge(t, cfg)
	tb.Bridge = &bridgev2.Bridge{Log: zerolog.Nop()}
	inv := tb.newInvite(time.Hour)
	require.EqualValues(t, 4096, tb.Guests.MaxFileBytes(), "limit not known yet")
	tb.SetMaxFileSize(1 << 20)
	require.EqualValues(t, 4096, tb.Guests.MaxFileBytes(), "a higher homeserver limit changes nothing")
	tb.SetMaxFileSize(200)
	require.EqualValues(t, 200, tb.Guests.MaxFileBytes())
	_, err := tb.Guests.StoreFile(tb.ctx, inv.conv, "bilde.png", "image/png", bytes.NewReader(gstPNG))
	require.ErrorIs(t, err, bridge.ErrFileTooLarge)
	_, err = tb.Guests.StoreFile(tb.ctx, inv.conv, "bilde.png", "image/png", bytes.NewReader(gstPNG[:200]))
	require.NoError(t, err, "exactly the limit is fine")
	tb.SetMaxFileSize(0)
	require.EqualValues(t, 4096, tb.Guests.MaxFileBytes())
}
