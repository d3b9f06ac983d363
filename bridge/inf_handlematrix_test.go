package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// infBot is the bridge bot as the officer handlers use it: it downloads
// (and would decrypt) officers' attachments.
type infBot struct {
	bridgev2.MatrixAPI
	mu        sync.Mutex
	media     map[id.ContentURIString][]byte
	downloads int
	fail      error
}

func (b *infBot) DownloadMedia(ctx context.Context, uri id.ContentURIString, file *event.EncryptedFileInfo) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.downloads++
	if b.fail != nil {
		return nil, b.fail
	}
	if file != nil {
		uri = file.URL
	}
	data, ok := b.media[uri]
	if !ok {
		return nil, errors.New("M_NOT_FOUND")
	}
	return data, nil
}

// infRoomMembers answers bridgev2's member lookups with officers' display names.
type infRoomMembers struct {
	bridgev2.MatrixConnector
	names map[id.UserID]string
	fail  error
}

func (m *infRoomMembers) GetMemberInfo(ctx context.Context, roomID id.RoomID, userID id.UserID) (*event.MemberEventContent, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	name, ok := m.names[userID]
	if !ok {
		return nil, nil
	}
	return &event.MemberEventContent{Membership: event.MembershipJoin, Displayname: name}, nil
}

// infOfficers is a test bridge with bridgev2's bot and member lookups doubled,
// one open conversation and the officer's client for it.
type infOfficers struct {
	*testBridge
	inv     testInvite
	client  *bridge.OfficerClient
	bot     *infBot
	members *infRoomMembers
}

func infNewOfficers(t *testing.T, cfg bridge.Config) *infOfficers {
	t.Helper()
	tb := newTestBridge(t, cfg)
	bot := &infBot{media: map[id.ContentURIString][]byte{}}
	members := &infRoomMembers{names: map[id.UserID]string{officer: "Kari Nordmann"}}
	tb.Bridge = &bridgev2.Bridge{Log: zerolog.Nop(), Bot: bot, Matrix: members}
	login := &bridgev2.UserLogin{UserLogin: &database.UserLogin{ID: "@officer:example.org"}}
	return &infOfficers{
		testBridge: tb, inv: tb.newInvite(time.Hour), bot: bot, members: members,
		client: &bridge.OfficerClient{Connector: tb.Connector, Login: login},
	}
}

// message is an officer's message as bridgev2 hands it on, already decrypted.
func (o *infOfficers) message(eventID id.EventID, content *event.MessageEventContent) *bridgev2.MatrixMessage {
	return &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
		Event:   &event.Event{ID: eventID, Sender: officer, Timestamp: 1_700_000_000_000, RoomID: o.inv.conv.RoomID},
		Content: content,
		Portal:  portalOf(o.inv.conv),
	}}
}

// keepInInbox stores an event in the inbox as a transaction would have.
func (o *infOfficers) keepInInbox(eventID id.EventID) {
	o.t.Helper()
	require.NoError(o.t, o.DB.Inbox.Keep(o.ctx, eventID, o.inv.conv.RoomID, `{}`, time.Now(), time.Now().UnixNano()))
}

func (o *infOfficers) inInbox(eventID id.EventID) bool {
	o.t.Helper()
	left, err := o.DB.Inbox.Leftovers(o.ctx, time.Now().Add(time.Hour))
	require.NoError(o.t, err)
	for _, l := range left {
		if l.EventID == eventID {
			return true
		}
	}
	return false
}

// infNext takes the next event pushed to a page, or fails.
func infNext(t *testing.T, sub *bridge.Subscription) bridge.GuestEvent {
	t.Helper()
	select {
	case evt := <-sub.C:
		return evt
	default:
		t.Fatal("nothing was pushed to the guest page")
		return bridge.GuestEvent{}
	}
}

func infNothingPushed(t *testing.T, sub *bridge.Subscription) {
	t.Helper()
	select {
	case evt := <-sub.C:
		t.Fatalf("unexpected push to the guest page: %+v", evt)
	default:
	}
}

// infScrape reads the metrics as Prometheus would.
func infScrape(t *testing.T, m *bridge.Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.String()
}

// infMetric is the value of one series in a scrape ("name{labels}").
func infMetric(t *testing.T, scrape, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(scrape, "\n") {
		if value, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(value, 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("series %s is not in the scrape", series)
	return 0
}

// An officer's text reaches the open guest page once, is kept sealed for a
// reload, and leaves the inbox; a redelivered event shows nothing twice.
func TestOfficerTextIsKeptSealedShownOnceAndLeavesTheInbox(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	sub := o.Hub.Subscribe(o.inv.conv.ID)
	defer sub.Close()
	const secret = "MARKER-ring-meg-på-116-111"
	o.keepInInbox("$t1")

	resp, err := o.client.HandleMatrixMessage(o.ctx, o.message("$t1", &event.MessageEventContent{MsgType: event.MsgText, Body: secret}))
	require.NoError(t, err)
	require.Equal(t, "$t1", string(resp.DB.ID))
	require.Equal(t, "@officer:example.org", string(resp.DB.SenderID))
	require.Equal(t, time.UnixMilli(1_700_000_000_000), resp.DB.Timestamp)
	require.False(t, o.inInbox("$t1"), "a message the guest side has leaves the inbox")

	pushed := infNext(t, sub)
	require.Equal(t, bridge.GuestEventMessage, pushed.Kind)
	require.False(t, pushed.Revision)
	require.Equal(t, secret, pushed.Entry.Text)
	require.Equal(t, "", pushed.Entry.SenderName, "officer names are off in the example config")

	kept, err := o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, "$t1")
	require.NoError(t, err)
	require.Equal(t, bridge.ToGuest, kept.Direction)
	require.Equal(t, secret, kept.Text)
	var sealed []byte
	require.NoError(t, o.DB.QueryRow(o.ctx, `SELECT sealed FROM sikkerchat_transcript WHERE matrix_event_id='$t1'`).Scan(&sealed))
	require.False(t, bytes.Contains(sealed, []byte("MARKER")), "the stored row is sealed")

	// The homeserver sends the transaction again (or the inbox replays it).
	o.keepInInbox("$t1")
	_, err = o.client.HandleMatrixMessage(o.ctx, o.message("$t1", &event.MessageEventContent{MsgType: event.MsgText, Body: secret}))
	require.NoError(t, err)
	infNothingPushed(t, sub)
	require.False(t, o.inInbox("$t1"))
	all, err := o.Transcript.Since(o.ctx, o.inv.conv.ID, 0)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, 1.0, infMetric(t, infScrape(t, o.Metrics), `sikkerchat_messages_total{direction="to_guest",kind="text"}`))
}

// Notices and emotes are text to the guest; what the page cannot show is
// refused with a notice to the officer, for good (it leaves the inbox).
func TestOfficerMessageKindsTheGuestPageCannotShowAreRefused(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	for _, msgType := range []event.MessageType{event.MsgNotice, event.MsgEmote} {
		eventID := id.EventID("$" + string(msgType))
		_, err := o.client.HandleMatrixMessage(o.ctx, o.message(eventID, &event.MessageEventContent{MsgType: msgType, Body: "hei"}))
		require.NoError(t, err, msgType)
		kept, err := o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, eventID)
		require.NoError(t, err)
		require.Equal(t, "text", kept.Kind)
	}
	for _, msgType := range []event.MessageType{event.MsgLocation, "m.sticker", "org.example.custom"} {
		eventID := id.EventID("$" + string(msgType))
		o.keepInInbox(eventID)
		_, err := o.client.HandleMatrixMessage(o.ctx, o.message(eventID, &event.MessageEventContent{MsgType: msgType, Body: "geo:59.9,10.7"}))
		var status bridgev2.MessageStatus
		require.ErrorAs(t, err, &status, msgType)
		require.True(t, status.IsCertain)
		require.True(t, status.SendNotice, "the officer is told")
		require.Contains(t, err.Error(), "can't be shown to the guest")
		require.False(t, o.inInbox(eventID), "a refusal is final: it is not handled again at the next start")
		kept, err := o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, eventID)
		require.NoError(t, err)
		require.Nil(t, kept)
	}
}

// Nothing an officer writes in a closed or expired conversation, or in a
// room that is no conversation, reaches a guest.
func TestOfficerMessageOutsideAnOpenConversationIsRefused(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	expired := o.newInvite(time.Hour)
	now := time.Now()
	for conv, status := range map[string]bridge.ConversationStatus{o.inv.conv.ID: bridge.StatusClosed, expired.conv.ID: bridge.StatusExpired} {
		closed, err := o.DB.Conversation.Close(o.ctx, conv, status, now, now.Add(time.Hour))
		require.NoError(t, err)
		require.True(t, closed)
	}
	stranger := &bridge.Conversation{ID: "not-a-conversation", RoomID: "!elsewhere:example.org"}

	for _, conv := range []*bridge.Conversation{o.inv.conv, expired.conv, stranger} {
		msg := o.message("$late-"+id.EventID(conv.ID), &event.MessageEventContent{MsgType: event.MsgText, Body: "Er du der?"})
		msg.Portal = portalOf(conv)
		o.keepInInbox(msg.Event.ID)
		_, err := o.client.HandleMatrixMessage(o.ctx, msg)
		var status bridgev2.MessageStatus
		require.ErrorAs(t, err, &status, conv.ID)
		require.True(t, status.IsCertain)
		require.Contains(t, err.Error(), "not an open sikkerchat conversation")
		require.False(t, o.inInbox(msg.Event.ID), conv.ID)
	}
}

// A reply to the guest's message points at it on the page; a reply to
// something the guest never had (a bot notice) is plain text.
func TestOfficerReplyPointsAtTheGuestMessageItAnswers(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	guestMsg := &bridge.TranscriptEntry{Direction: bridge.FromGuest, ClientID: "client-0000000001", Status: bridge.EntryStored, CreatedAt: time.Now(), Kind: "text", Text: "Han truer meg"}
	_, err := o.Transcript.Append(o.ctx, o.inv.conv.ID, guestMsg)
	require.NoError(t, err)
	_, err = o.Transcript.MarkDelivered(o.ctx, o.inv.conv.ID, guestMsg.Seq, "$guest1")
	require.NoError(t, err)

	reply := &event.MessageEventContent{MsgType: event.MsgText, Body: "Ta skjermbilde av det", RelatesTo: (&event.RelatesTo{}).SetReplyTo("$guest1")}
	_, err = o.client.HandleMatrixMessage(o.ctx, o.message("$r1", reply))
	require.NoError(t, err)
	kept, err := o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, "$r1")
	require.NoError(t, err)
	require.Equal(t, guestMsg.Seq, kept.ReplyTo)

	toNotice := &event.MessageEventContent{MsgType: event.MsgText, Body: "Se over", RelatesTo: (&event.RelatesTo{}).SetReplyTo("$bot-notice")}
	_, err = o.client.HandleMatrixMessage(o.ctx, o.message("$r2", toNotice))
	require.NoError(t, err)
	kept, err = o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, "$r2")
	require.NoError(t, err)
	require.Zero(t, kept.ReplyTo)
}

// The guest sees the officer's display name only when the unit has chosen
// to show it; a failed lookup shows the unit alone, never an error.
func TestOfficerDisplayNameIsShownOnlyWhenTheUnitAllowsIt(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.ShowOfficerNames = true
	o := infNewOfficers(t, cfg)
	_, err := o.client.HandleMatrixMessage(o.ctx, o.message("$n1", &event.MessageEventContent{MsgType: event.MsgText, Body: "Hei"}))
	require.NoError(t, err)
	kept, err := o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, "$n1")
	require.NoError(t, err)
	require.Equal(t, "Kari Nordmann", kept.SenderName)

	o.members.fail = errors.New("homeserver down")
	_, err = o.client.HandleMatrixMessage(o.ctx, o.message("$n2", &event.MessageEventContent{MsgType: event.MsgText, Body: "Hei igjen"}))
	require.NoError(t, err)
	kept, err = o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, "$n2")
	require.NoError(t, err)
	require.Empty(t, kept.SenderName)

	o.members.fail = nil
	msg := o.message("$n3", &event.MessageEventContent{MsgType: event.MsgText, Body: "Fra en uten profil"})
	msg.Event.Sender = "@officer2:example.org"
	_, err = o.client.HandleMatrixMessage(o.ctx, msg)
	require.NoError(t, err)
	kept, err = o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, "$n3")
	require.NoError(t, err)
	require.Empty(t, kept.SenderName)
}

// An officer's attachment is downloaded once, kept sealed in the bridge for
// the guest to download, with its real type, a safe name and a caption when
// the officer wrote one.
func TestOfficerFileIsKeptSealedWithItsCaptionAndDownloadedOnce(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	o.bot.media["mxc://example.org/plain"] = pdfBytes
	o.bot.media["mxc://example.org/encrypted"] = []byte("\x89PNG\r\n\x1a\n-bilde-")
	sub := o.Hub.Subscribe(o.inv.conv.ID)
	defer sub.Close()

	captioned := &event.MessageEventContent{MsgType: event.MsgFile, Body: "Her er skjemaet du skal fylle ut", FileName: "../../anmeldelse.pdf", URL: "mxc://example.org/plain"}
	o.keepInInbox("$f1")
	_, err := o.client.HandleMatrixMessage(o.ctx, o.message("$f1", captioned))
	require.NoError(t, err)
	require.False(t, o.inInbox("$f1"))
	pushed := infNext(t, sub)
	require.Equal(t, "file", pushed.Entry.Kind)
	require.Equal(t, "Her er skjemaet du skal fylle ut", pushed.Entry.Text, "the body is a caption when a file name is given")
	info, ok := bridge.FileInfoOf(pushed.Entry)
	require.True(t, ok)
	require.Equal(t, "application/pdf", info.Mime)
	require.NotContains(t, info.Name, "/", "the name cannot climb out of the download folder")
	require.Equal(t, len(pdfBytes), info.Size)
	stored, err := o.Transcript.File(o.ctx, o.inv.conv.ID, info.ID)
	require.NoError(t, err)
	require.Equal(t, pdfBytes, stored)

	// Element sends images with the name as the body: no caption then.
	image := &event.MessageEventContent{MsgType: event.MsgImage, Body: "bilde.png", File: &event.EncryptedFileInfo{URL: "mxc://example.org/encrypted"}}
	_, err = o.client.HandleMatrixMessage(o.ctx, o.message("$f2", image))
	require.NoError(t, err)
	pushed = infNext(t, sub)
	require.Empty(t, pushed.Entry.Text)
	info, ok = bridge.FileInfoOf(pushed.Entry)
	require.True(t, ok)
	require.Equal(t, "image/png", info.Mime)

	// Handled again (a replay after a crash): no second download, no second copy.
	_, err = o.client.HandleMatrixMessage(o.ctx, o.message("$f1", captioned))
	require.NoError(t, err)
	require.Equal(t, 2, o.bot.downloads)
	infNothingPushed(t, sub)
	scrape := infScrape(t, o.Metrics)
	require.Equal(t, 2.0, infMetric(t, scrape, `sikkerchat_messages_total{direction="to_guest",kind="file"}`))
	require.Equal(t, 0.0, infMetric(t, scrape, `sikkerchat_messages_total{direction="to_guest",kind="text"}`))
}

// A download that fails may work later: the event stays in the inbox to be
// handled again at the next start, and the failure is counted.
func TestFailedOfficerFileDownloadStaysInTheInboxForRetry(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	o.bot.fail = errors.New("connection reset by peer")
	o.keepInInbox("$f1")
	_, err := o.client.HandleMatrixMessage(o.ctx, o.message("$f1", &event.MessageEventContent{MsgType: event.MsgFile, Body: "a.pdf", URL: "mxc://example.org/a"}))
	require.ErrorContains(t, err, "failed to download officer file")
	require.True(t, o.inInbox("$f1"), "a failure a retry may fix keeps the event")
	require.Equal(t, 1.0, infMetric(t, infScrape(t, o.Metrics), `sikkerchat_errors_total{kind="officer_message"}`))
	kept, err := o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, "$f1")
	require.NoError(t, err)
	require.Nil(t, kept, "nothing half-kept for the guest")

	o.bot.fail = nil
	o.bot.media["mxc://example.org/a"] = pdfBytes
	_, err = o.client.HandleMatrixMessage(o.ctx, o.message("$f1", &event.MessageEventContent{MsgType: event.MsgFile, Body: "a.pdf", URL: "mxc://example.org/a"}))
	require.NoError(t, err)
	require.False(t, o.inInbox("$f1"))
}

// When an officer deletes a file message, the guest loses the message and
// the file with it.
func TestOfficerDeletingAFileMessageDeletesTheFile(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	o.bot.media["mxc://example.org/f"] = pdfBytes
	_, err := o.client.HandleMatrixMessage(o.ctx, o.message("$f", &event.MessageEventContent{MsgType: event.MsgFile, Body: "feil.pdf", URL: "mxc://example.org/f"}))
	require.NoError(t, err)
	kept, err := o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, "$f")
	require.NoError(t, err)
	info, ok := bridge.FileInfoOf(kept)
	require.True(t, ok)
	sub := o.Hub.Subscribe(o.inv.conv.ID)
	defer sub.Close()

	o.keepInInbox("$redact")
	require.NoError(t, o.client.HandleMatrixMessageRemove(o.ctx, &bridgev2.MatrixMessageRemove{
		MatrixEventBase: bridgev2.MatrixEventBase[*event.RedactionEventContent]{
			Event: &event.Event{ID: "$redact", Sender: officer}, Content: &event.RedactionEventContent{}, Portal: portalOf(o.inv.conv),
		},
		TargetMessage: &database.Message{MXID: "$f", SenderMXID: officer},
	}))
	require.False(t, o.inInbox("$redact"))
	pushed := infNext(t, sub)
	require.True(t, pushed.Revision)
	require.True(t, pushed.Entry.Deleted)
	require.Empty(t, pushed.Entry.Extra, "the page no longer learns the file's name or link")
	_, err = o.Transcript.File(o.ctx, o.inv.conv.ID, info.ID)
	require.Error(t, err, "the sealed file is gone")
	kept, err = o.Transcript.ByEvent(o.ctx, o.inv.conv.ID, "$f")
	require.NoError(t, err)
	require.True(t, kept.Deleted)
	require.Empty(t, kept.Text)
}

// An edit shows the guest the new text in place of the old; an edit of a
// message the guest never had changes nothing and pushes nothing. Either way
// the edit leaves the inbox.
func TestOfficerEditIsShownInPlaceAndLeavesTheInbox(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	o.officerSaid(o.inv.conv, "$msg", "Vi ringer kl 14")
	sub := o.Hub.Subscribe(o.inv.conv.ID)
	defer sub.Close()

	o.keepInInbox(infEditID(officer))
	require.NoError(t, o.client.HandleMatrixEdit(o.ctx, edit(o.inv.conv, officer, officer, "$msg", "Vi ringer kl 15")))
	require.False(t, o.inInbox(infEditID(officer)))
	pushed := infNext(t, sub)
	require.True(t, pushed.Revision)
	require.Equal(t, "Vi ringer kl 15", pushed.Entry.Text)
	require.True(t, pushed.Entry.Edited)

	o.keepInInbox(infEditID(officer))
	require.NoError(t, o.client.HandleMatrixEdit(o.ctx, edit(o.inv.conv, officer, officer, "$never-seen", "x")))
	infNothingPushed(t, sub)
	require.False(t, o.inInbox(infEditID(officer)))

	// A refused edit of a colleague's message is final too.
	o.keepInInbox(infEditID("@officer2:example.org"))
	require.Error(t, o.client.HandleMatrixEdit(o.ctx, edit(o.inv.conv, "@officer2:example.org", officer, "$msg", "Vi ringer aldri")))
	require.False(t, o.inInbox(infEditID("@officer2:example.org")))
	infNothingPushed(t, sub)
}

// infEditID is the event ID edit() gives an officer's edit.
func infEditID(sender id.UserID) id.EventID { return id.EventID("$edit-" + string(sender)) }

// The refusal of an edit reaches the officer in the bridge's language.
func TestRefusedEditIsExplainedInTheConfiguredLanguage(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.Language = "en"
	o := infNewOfficers(t, cfg)
	o.officerSaid(o.inv.conv, "$msg", "Hei")
	err := o.client.HandleMatrixEdit(o.ctx, edit(o.inv.conv, "@officer2:example.org", officer, "$msg", "Hallo"))
	require.ErrorContains(t, err, "You can only edit your own messages")
}

// The guest sees "the police are writing" while an officer types.
func TestOfficerTypingIsPushedToTheGuestPage(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	sub := o.Hub.Subscribe(o.inv.conv.ID)
	defer sub.Close()
	for _, typing := range []bool{true, false} {
		require.NoError(t, o.client.HandleMatrixTyping(o.ctx, &bridgev2.MatrixTyping{Portal: portalOf(o.inv.conv), IsTyping: typing}))
		pushed := infNext(t, sub)
		require.Equal(t, bridge.GuestEventTyping, pushed.Kind)
		require.Equal(t, typing, pushed.Typing)
	}
}

// guestSaid stores a guest message and marks it delivered to the room as an event.
func (o *infOfficers) guestSaid(clientID string, eventID id.EventID) int64 {
	o.t.Helper()
	entry := &bridge.TranscriptEntry{Direction: bridge.FromGuest, ClientID: clientID, Status: bridge.EntryStored, CreatedAt: time.Now(), Kind: "text", Text: "melding " + clientID}
	_, err := o.Transcript.Append(o.ctx, o.inv.conv.ID, entry)
	require.NoError(o.t, err)
	if eventID != "" {
		ok, err := o.Transcript.MarkDelivered(o.ctx, o.inv.conv.ID, entry.Seq, eventID)
		require.NoError(o.t, err)
		require.True(o.t, ok)
	}
	return entry.Seq
}

// An officer's read receipt shows the guest which of their delivered
// messages were read, each once; a message not yet in the room is not
// "read", and a receipt for a bot notice moves nothing.
func TestOfficerReadReceiptMarksTheGuestsDeliveredMessagesRead(t *testing.T) {
	o := infNewOfficers(t, newTestConfig(t))
	first := o.guestSaid("client-0000000001", "$g1")
	second := o.guestSaid("client-0000000002", "$g2")
	o.officerSaid(o.inv.conv, "$o1", "Takk")
	pending := o.guestSaid("client-0000000003", "")
	third := o.guestSaid("client-0000000004", "$g4")
	sub := o.Hub.Subscribe(o.inv.conv.ID)
	defer sub.Close()
	receipt := func(eventID id.EventID) error {
		return o.client.HandleMatrixReadReceipt(o.ctx, &bridgev2.MatrixReadReceipt{Portal: portalOf(o.inv.conv), EventID: eventID})
	}

	require.NoError(t, receipt("$o1"))
	for _, want := range []int64{first, second} {
		pushed := infNext(t, sub)
		require.Equal(t, bridge.GuestEventStatus, pushed.Kind)
		require.Equal(t, want, pushed.Entry.Seq)
		require.Equal(t, bridge.EntryRead, pushed.Entry.Status)
	}
	infNothingPushed(t, sub)
	require.Equal(t, second, o.conv(o.inv.conv.ID).OfficerReadSeq)

	require.NoError(t, receipt("$o1"), "a second receipt for the same place")
	infNothingPushed(t, sub)
	require.NoError(t, receipt("$bot-notice"))
	infNothingPushed(t, sub)

	require.NoError(t, receipt("$g4"))
	pushed := infNext(t, sub)
	require.Equal(t, third, pushed.Entry.Seq)
	infNothingPushed(t, sub)
	require.NotEqual(t, pending, pushed.Entry.Seq)
	require.Equal(t, third, o.conv(o.inv.conv.ID).OfficerReadSeq)

	// A receipt in a room that is no conversation is ignored.
	require.NoError(t, o.client.HandleMatrixReadReceipt(o.ctx, &bridgev2.MatrixReadReceipt{
		Portal: portalOf(&bridge.Conversation{ID: "unknown"}), EventID: "$g1",
	}))
}

// Officers are Matrix users: their bridgev2 "login" is always connected,
// never claims a guest as itself, and syncs nothing from the guest side
// (the room's policy is sikkerchat's own). Nobody can log in through a
// bridgev2 login flow.
func TestOfficerLoginsAreMatrixUsersWithoutLoginFlows(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	require.Empty(t, tb.GetLoginFlows())
	_, err := tb.CreateLogin(tb.ctx, nil, "password")
	require.Error(t, err)

	login := &bridgev2.UserLogin{UserLogin: &database.UserLogin{ID: "@officer:example.org"}}
	require.NoError(t, tb.LoadUserLogin(tb.ctx, login))
	client, ok := login.Client.(*bridge.OfficerClient)
	require.True(t, ok)
	require.Same(t, tb.Connector, client.Connector)
	require.True(t, client.IsLoggedIn())
	require.False(t, client.IsThisUser(tb.ctx, "sikkerchat_ghost"))
	info, err := client.GetChatInfo(tb.ctx, nil)
	require.NoError(t, err)
	require.Equal(t, &bridgev2.ChatInfo{}, info, "bridgev2 must change nothing of the room")
	user, err := client.GetUserInfo(tb.ctx, nil)
	require.NoError(t, err)
	require.Nil(t, user)
}
