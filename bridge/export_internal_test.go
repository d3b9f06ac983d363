package bridge

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

func textEvent(eventID id.EventID, sender id.UserID, ts int64, body string) *event.Event {
	return &event.Event{ID: eventID, Sender: sender, Timestamp: ts, Type: event.EventMessage,
		Content: event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgText, Body: body}}}
}

func editEvent(eventID id.EventID, sender id.UserID, ts int64, target id.EventID, body string) *event.Event {
	content := &event.MessageEventContent{MsgType: event.MsgText, Body: "* " + body,
		NewContent: &event.MessageEventContent{MsgType: event.MsgText, Body: body}}
	content.SetEdit(target)
	content.NewContent = &event.MessageEventContent{MsgType: event.MsgText, Body: body}
	return &event.Event{ID: eventID, Sender: sender, Timestamp: ts, Type: event.EventMessage, Content: event.Content{Parsed: content}}
}

// The export shows what the guest last saw of an edited message (and every
// version before), ignores edits by anyone but the author, and names who
// redacted a message.
func TestExportFoldsEditsAndNamesTheRedactor(t *testing.T) {
	original := textEvent("$1", "@officer:x", 1000, "Møt meg kl 14")
	redacted := textEvent("$2", "@officer:x", 2000, "")
	redacted.Unsigned.RedactedBecause = &event.Event{ID: "$r", Sender: "@officer:x", Timestamp: 2500}
	timeline := []roomEvent{
		{evt: original, encrypted: true},
		{evt: redacted, encrypted: true},
		{evt: editEvent("$3", "@officer:x", 3000, "$1", "Møt meg kl 15"), encrypted: true},
		{evt: editEvent("$4", "@officer2:x", 4000, "$1", "Møt meg aldri"), encrypted: true},
		{evt: editEvent("$5", "@officer:x", 5000, "$1", "Møt meg kl 16"), encrypted: true},
		{evt: &event.Event{ID: "$6", Sender: "@sikkerchat_g:x", Timestamp: 6000}, encrypted: true, undecryptable: true},
	}
	messages, files, err := exportMessages(context.Background(), timeline, nil)
	require.NoError(t, err)
	require.Empty(t, files)
	require.Len(t, messages, 3, "edits are folded into their message")
	require.Equal(t, "Møt meg kl 14", messages[0].Body, "the text as sent")
	require.Equal(t, []ExportRevision{
		{EventID: "$3", Timestamp: 3000, Body: "Møt meg kl 15"},
		{EventID: "$5", Timestamp: 5000, Body: "Møt meg kl 16"},
	}, messages[0].Revisions, "the author's edits only; the last is what the guest saw last")
	require.True(t, messages[1].Redacted)
	require.Equal(t, id.UserID("@officer:x"), messages[1].RedactedBy)
	require.Equal(t, int64(2500), messages[1].RedactedAt)
	require.Equal(t, id.EventID("$r"), messages[1].RedactionID)
	require.True(t, messages[2].Undecryptable)

	data, err := AssembleExport(&Conversation{ID: "c1", RoomID: "!r:x"}, "@officer:x", messages, files, nil)
	require.NoError(t, err)
	require.Empty(t, VerifyExportBytes(data))
	html := string(exportFile(t, data, "transcript.html"))
	require.Contains(t, html, "Møt meg kl 16")
	require.Contains(t, html, "slettet av @officer:x")
	require.NotContains(t, html, "Møt meg aldri")
}

func exportFile(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	for _, f := range zr.File {
		if f.Name == name {
			rc, err := f.Open()
			require.NoError(t, err)
			defer rc.Close()
			content, err := io.ReadAll(rc)
			require.NoError(t, err)
			return content
		}
	}
	t.Fatalf("%s is not in the package", name)
	return nil
}
