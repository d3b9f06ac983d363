package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// infHistory is a homeserver that serves one room's history, newest first
// in pages as /messages does, and its media.
type infHistory struct {
	t     *testing.T
	mu    sync.Mutex
	pages map[string]infPage // by the from token ("" for the first)
	media map[string][]byte  // by media ID
	froms []string
	users []string
	down  bool
}

type infPage struct {
	events []map[string]any
	end    string
}

func (h *infHistory) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer as-token" {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN_TOKEN","error":"bad token"}`))
		return
	}
	h.users = append(h.users, r.URL.Query().Get("user_id"))
	switch {
	case h.down:
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte(`{"errcode":"M_UNKNOWN","error":"upstream down"}`))
	case strings.HasSuffix(r.URL.Path, "/messages"):
		require.Equal(h.t, "b", r.URL.Query().Get("dir"), "the bot reads backwards from the newest")
		from := r.URL.Query().Get("from")
		h.froms = append(h.froms, from)
		page := h.pages[from]
		chunk := page.events
		if chunk == nil {
			chunk = []map[string]any{}
		}
		resp := map[string]any{"chunk": chunk, "start": from}
		if page.end != "" {
			resp["end"] = page.end
		}
		_ = json.NewEncoder(w).Encode(resp)
	case strings.Contains(r.URL.Path, "/media/download/example.org/"):
		data, ok := h.media[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"errcode":"M_NOT_FOUND","error":"gone"}`))
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(data)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errcode":"M_UNRECOGNIZED","error":"not here"}`))
	}
}

const (
	infGuest   = id.UserID("@sikkerchat_g1:example.org")
	infOfficer = id.UserID("@officer:example.org")
	infBotUser = id.UserID("@sikkerchatbot:example.org")
)

var infPNG = []byte("\x89PNG\r\n\x1a\nskjermbilde av truslene")

// infEvidence is a connector whose bot reads the room from infHistory and
// whose crypto decrypts what the test says.
type infEvidence struct {
	sc      *Connector
	conv    *Conversation
	history *infHistory
	crypto  *infCrypto
	side    *infSide
}

func infNewEvidence(t *testing.T) *infEvidence {
	t.Helper()
	sc := infConnector(t)
	conv := infConversationIn(t, sc, "!room:example.org")
	history := &infHistory{t: t, media: map[string][]byte{"img1": infPNG}}
	srv := httptest.NewServer(history)
	t.Cleanup(srv.Close)
	mc := infMatrixConnector(t, srv.URL)
	crypto := &infCrypto{decrypted: map[id.EventID]*event.Event{}}
	mc.Crypto = crypto
	sc.Bridge = &bridgev2.Bridge{Matrix: mc, Bot: &matrix.ASIntent{Matrix: mc.Bot, Connector: mc}, Log: zerolog.Nop()}
	return &infEvidence{sc: sc, conv: conv, history: history, crypto: crypto, side: sc.Matrix.(*infSide)}
}

// encrypted adds an encrypted event to the room that decrypts to content
// (nil: the bot never got its key).
func (e *infEvidence) encrypted(eventID id.EventID, sender id.UserID, ts int64, evtType event.Type, content any) map[string]any {
	raw := encryptedEvent(string(eventID), "!room:example.org", string(sender), "s")
	raw["origin_server_ts"] = ts
	if content != nil {
		e.crypto.decrypted[eventID] = &event.Event{ID: eventID, Sender: sender, Timestamp: ts, RoomID: "!room:example.org",
			Type: evtType, Content: event.Content{Parsed: content}}
	}
	return raw
}

// stageRoom lays out a conversation's history over three pages.
func (e *infEvidence) stageRoom() {
	redacted := encryptedEvent("$m5", "!room:example.org", string(infGuest), "s")
	redacted["content"] = map[string]any{}
	redacted["origin_server_ts"] = 5000
	redacted["unsigned"] = map[string]any{"redacted_because": map[string]any{
		"event_id": "$red", "sender": string(infOfficer), "origin_server_ts": 5500, "type": "m.room.redaction", "room_id": "!room:example.org",
		"content": map[string]any{"redacts": "$m5"},
	}}
	notice := map[string]any{"event_id": "$m3", "room_id": "!room:example.org", "sender": string(infBotUser), "type": "m.room.message",
		"origin_server_ts": 3000, "content": map[string]any{"msgtype": "m.notice", "body": "Gjesten har åpnet samtalen."}}
	member := map[string]any{"event_id": "$s1", "room_id": "!room:example.org", "sender": string(infOfficer), "type": "m.room.member",
		"state_key": string(infOfficer), "origin_server_ts": 5800, "content": map[string]any{"membership": "join"}}
	e.history.pages = map[string]infPage{
		"": {events: []map[string]any{
			e.encrypted("$m8", infOfficer, 8000, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgFile, Body: "slettet.pdf", URL: "mxc://example.org/gone"}),
			e.encrypted("$m6", infOfficer, 6000, event.EventReaction, &event.ReactionEventContent{RelatesTo: event.RelatesTo{Type: event.RelAnnotation, EventID: "$m1", Key: "👍"}}),
			member, redacted,
		}, end: "page2"},
		"page2": {events: []map[string]any{
			e.encrypted("$m4", infGuest, 4000, event.EventMessage, nil),
			notice,
			e.encrypted("$m2", infGuest, 2000, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgImage, Body: "bilde.png", URL: "mxc://example.org/img1"}),
			e.encrypted("$m1", infGuest, 1000, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: "Hei, jeg trenger hjelp"}),
		}, end: "page3"},
		"page3": {},
	}
}

// The evidence package is read from the room itself as the bridge bot, page
// by page back to the start: messages oldest first, decrypted where the bot
// can, plaintext notices marked as such, undecryptable and redacted ones
// kept as facts (who redacted, when), attachments downloaded and hashed;
// state events and reactions are no messages.
func TestEvidenceIsReadFromTheWholeRoomHistoryAsTheBot(t *testing.T) {
	e := infNewEvidence(t)
	e.stageRoom()
	ctx := context.Background()

	data, err := e.sc.Evidence.BuildExport(ctx, e.conv, string(infOfficer))
	require.NoError(t, err)
	require.Empty(t, VerifyExportBytes(data))
	require.Equal(t, []string{"", "page2", "page3"}, e.history.froms)
	for _, user := range e.history.users {
		require.Equal(t, string(infBotUser), user, "every request is the bot's")
	}

	var messages []*ExportMessage
	require.NoError(t, json.Unmarshal(exportFile(t, data, "transcript.json"), &messages))
	pngSum := sha256.Sum256(infPNG)
	require.Equal(t, []*ExportMessage{
		{EventID: "$m1", Sender: infGuest, Timestamp: 1000, Type: "m.text", Body: "Hei, jeg trenger hjelp", Encrypted: true},
		{EventID: "$m2", Sender: infGuest, Timestamp: 2000, Type: "m.image", Body: "bilde.png", Encrypted: true,
			File: "files/001-bilde.png", FileSHA: hex.EncodeToString(pngSum[:])},
		{EventID: "$m3", Sender: infBotUser, Timestamp: 3000, Type: "m.notice", Body: "Gjesten har åpnet samtalen."},
		{EventID: "$m4", Sender: infGuest, Timestamp: 4000, Encrypted: true, Undecryptable: true},
		{EventID: "$m5", Sender: infGuest, Timestamp: 5000, Encrypted: true, Redacted: true, RedactedBy: infOfficer, RedactedAt: 5500, RedactionID: "$red"},
		{EventID: "$m8", Sender: infOfficer, Timestamp: 8000, Type: "m.file", Body: "slettet.pdf", Encrypted: true},
	}, messages)
	require.Equal(t, infPNG, exportFile(t, data, "files/001-bilde.png"))

	var manifest Manifest
	require.NoError(t, json.Unmarshal(exportFile(t, data, "manifest.json"), &manifest))
	require.Equal(t, e.conv.ID, manifest.ConversationID)
	require.Equal(t, id.RoomID("!room:example.org"), manifest.RoomID)
	require.Equal(t, string(infOfficer), manifest.ExportedBy)
	require.Len(t, manifest.Messages, 6)

	// The redaction the bridge may not have seen happen is in the audit
	// trail now, once, and in the package's copy of it.
	_, err = e.sc.Evidence.BuildExport(ctx, e.conv, string(infOfficer))
	require.NoError(t, err)
	rows, err := e.sc.Audit.ForConversation(ctx, e.conv.ID)
	require.NoError(t, err)
	var redactions []*AuditRow
	for _, r := range rows {
		if r.Action == AuditRedact {
			redactions = append(redactions, r)
		}
	}
	require.Len(t, redactions, 1)
	require.Equal(t, string(infOfficer), redactions[0].Actor)
	require.Equal(t, "$m5 redacted by $red", redactions[0].Detail)
	require.Contains(t, string(exportFile(t, data, "audit.json")), "$m5 redacted by $red")
}

// `!sc export` puts the package in the room and, when configured, in the
// evidence folder (closed to others); the audit trail records the
// package's SHA-256, which is how a copy is later recognised.
func TestExportIsUploadedSavedAndRecordedInTheAuditTrail(t *testing.T) {
	e := infNewEvidence(t)
	e.stageRoom()
	ctx := context.Background()
	e.sc.Config.EvidenceDir = filepath.Join(t.TempDir(), "bevis")

	name, err := e.sc.Evidence.Export(ctx, e.conv, string(infOfficer))
	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`^sikkerchat-`+e.conv.ID+`-\d{8}-\d{6}\.zip$`), name)
	uploaded := e.side.exports[name]
	require.NotEmpty(t, uploaded)
	require.Empty(t, VerifyExportBytes(uploaded))

	saved, err := os.ReadFile(filepath.Join(e.sc.Config.EvidenceDir, name))
	require.NoError(t, err)
	require.Equal(t, uploaded, saved, "the folder's copy is the room's")
	info, err := os.Stat(filepath.Join(e.sc.Config.EvidenceDir, name))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	info, err = os.Stat(e.sc.Config.EvidenceDir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), info.Mode().Perm())

	rows, err := e.sc.Audit.ForConversation(ctx, e.conv.ID)
	require.NoError(t, err)
	last := rows[len(rows)-1]
	require.Equal(t, AuditExport, last.Action)
	require.Equal(t, string(infOfficer), last.Actor)
	sum := sha256.Sum256(uploaded)
	require.Equal(t, "sha256 "+hex.EncodeToString(sum[:]), last.Detail)
	require.NoError(t, e.sc.Audit.Verify(ctx))

	trail, err := json.Marshal(rows)
	require.NoError(t, err)
	record, err := FindExportRecord(trail, hex.EncodeToString(sum[:]))
	require.NoError(t, err)
	require.NotNil(t, record)
	require.Equal(t, last.Seq, record.Seq)
	require.Equal(t, string(infOfficer), record.Actor)
}

// An export that cannot be completed leaves no half: no upload, no audit
// row claiming a package that does not exist.
func TestFailedExportLeavesNoPackageAndNoRecord(t *testing.T) {
	for name, breakIt := range map[string]func(t *testing.T, e *infEvidence){
		"encryption off": func(t *testing.T, e *infEvidence) {
			e.sc.Bridge.Matrix.(*matrix.Connector).Crypto = nil
		},
		"homeserver down": func(t *testing.T, e *infEvidence) { e.history.down = true },
		"evidence folder unusable": func(t *testing.T, e *infEvidence) {
			blocker := filepath.Join(t.TempDir(), "fil")
			require.NoError(t, os.WriteFile(blocker, nil, 0o600))
			e.sc.Config.EvidenceDir = filepath.Join(blocker, "bevis")
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := infNewEvidence(t)
			e.stageRoom()
			breakIt(t, e)
			_, err := e.sc.Evidence.Export(context.Background(), e.conv, string(infOfficer))
			require.Error(t, err)
			if name == "encryption off" {
				require.ErrorIs(t, err, ErrEncryptionDisabled)
			}
			require.Empty(t, e.side.exports)
			rows, err := e.sc.Audit.ForConversation(context.Background(), e.conv.ID)
			require.NoError(t, err)
			for _, r := range rows {
				require.NotEqual(t, AuditExport, r.Action)
			}
		})
	}
}

// Every file the package carries gets its own numbered name, so two
// attachments with the same name never overwrite each other, and a name
// from the room cannot point outside the package's files/ folder.
func TestExportNumbersFilesAndKeepsTheirNamesSafe(t *testing.T) {
	download := func(content *event.MessageEventContent) ([]byte, error) {
		return []byte("%PDF-1.4 " + string(content.URL)), nil
	}
	file := func(eventID id.EventID, name string, url id.ContentURIString) roomEvent {
		return roomEvent{evt: &event.Event{ID: eventID, Sender: infGuest, Type: event.EventMessage,
			Content: event.Content{Parsed: &event.MessageEventContent{MsgType: event.MsgFile, Body: name, URL: url}}}, encrypted: true}
	}
	messages, files, err := exportMessages(context.Background(), []roomEvent{
		file("$1", "anmeldelse.pdf", "mxc://example.org/a"),
		file("$2", "anmeldelse.pdf", "mxc://example.org/b"),
		file("$3", "../../../etc/passwd", "mxc://example.org/c"),
		file("$4", "ingen-url.pdf", ""),
	}, download)
	require.NoError(t, err)
	require.Len(t, files, 3)
	require.Equal(t, "files/001-anmeldelse.pdf", messages[0].File)
	require.Equal(t, "files/002-anmeldelse.pdf", messages[1].File)
	require.NotEqual(t, files[messages[0].File], files[messages[1].File])
	require.True(t, strings.HasPrefix(messages[2].File, "files/003-"))
	require.NotContains(t, strings.TrimPrefix(messages[2].File, "files/"), "/")
	require.NotContains(t, messages[2].File, "..")
	require.Empty(t, messages[3].File, "a file message without media carries no file")

	data, err := AssembleExport(&Conversation{ID: "c1", RoomID: "!r:x"}, string(infOfficer), messages, files, nil)
	require.NoError(t, err)
	require.Empty(t, VerifyExportBytes(data))
}

// An officer who takes a reply back in a Messenger or Instagram room (the
// person keeps it: Meta cannot unsend) leaves a trace as in a secure
// conversation: the audit row names them at once, under the social
// conversation's ID, and the social export names them, for the message and
// in its audit trail, once.
func TestOfficerRedactionInASocialRoomIsAuditedAndExported(t *testing.T) {
	e := infNewEvidence(t)
	ctx := context.Background()
	sc := e.sc
	sc.Config.Meta = MetaConfig{AppSecret: socSecret, AppID: socAppID, Pages: []MetaPage{{PageID: socPage, AccessToken: socToken}}}
	sc.Social = newSocial(sc, &socRoom{})
	th := &SocialConversation{ID: "social1", Platform: "messenger", AccountID: socPage, PersonHash: []byte("h"), GhostID: "pg",
		Status: "open", CreatedAt: time.Now(), RoomID: "!socialroom:example.org"}
	require.NoError(t, sc.DB.Social.Insert(ctx, th))
	person := id.UserID("@sikkerchat_pg:example.org")
	taken := encryptedEvent("$o1", string(th.RoomID), string(infOfficer), "s")
	taken["content"] = map[string]any{}
	taken["origin_server_ts"] = 2000
	taken["unsigned"] = map[string]any{"redacted_because": map[string]any{
		"event_id": "$red1", "sender": string(infOfficer), "origin_server_ts": 2500, "type": "m.room.redaction",
		"room_id": string(th.RoomID), "content": map[string]any{"redacts": "$o1"},
	}}
	e.history.pages = map[string]infPage{"": {events: []map[string]any{
		e.encrypted("$o2", infOfficer, 3000, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: "Hei, du skriver med politiet."}),
		taken,
		e.encrypted("$p1", person, 1000, event.EventMessage, &event.MessageEventContent{MsgType: event.MsgText, Body: "Hei"}),
	}}}

	// The redaction as the homeserver hands it to the bridge, twice.
	redaction := &event.Event{Type: event.EventRedaction, RoomID: th.RoomID, ID: "$red1", Sender: infOfficer, Timestamp: 2500,
		Content: event.Content{VeryRaw: json.RawMessage(`{"redacts":"$o1"}`)}}
	redactRows := func(rows []*AuditRow) [][]string {
		var out [][]string
		for _, r := range rows {
			if r.Action == AuditRedact {
				out = append(out, []string{r.Actor, r.ConversationID, r.Detail})
			}
		}
		return out
	}
	want := [][]string{{string(infOfficer), th.ID, "$o1 redacted by $red1"}}
	for range 2 {
		sc.Guard.onRedaction(ctx, redaction)
		rows, err := sc.Audit.ForConversation(ctx, th.ID)
		require.NoError(t, err)
		require.Equal(t, want, redactRows(rows), "audited when it happens, under the social conversation")
	}

	data, err := sc.Evidence.BuildExport(ctx, socialAsConversation(th), string(infOfficer))
	require.NoError(t, err)
	require.Empty(t, VerifyExportBytes(data))
	var messages []*ExportMessage
	require.NoError(t, json.Unmarshal(exportFile(t, data, "transcript.json"), &messages))
	require.Len(t, messages, 3)
	require.Equal(t, &ExportMessage{EventID: "$o1", Sender: infOfficer, Timestamp: 2000, Encrypted: true,
		Redacted: true, RedactedBy: infOfficer, RedactedAt: 2500, RedactionID: "$red1"}, messages[1])
	require.Contains(t, string(exportFile(t, data, "transcript.html")), "slettet av "+string(infOfficer))
	var audit []*AuditRow
	require.NoError(t, json.Unmarshal(exportFile(t, data, "audit.json"), &audit))
	require.Equal(t, want, redactRows(audit), "the package's trail names the officer, once")
}
