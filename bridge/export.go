package bridge

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2/matrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"
)

// An evidence package is built from the room itself: the bridge reads and
// decrypts the room's history and media as its bot, so it works before and
// after close, until purge. Its manifest hashes every file and every message's
// canonical JSON, chained, so that `sikkerchat verify-export` can say exactly
// what was changed in a copy.

// Evidence builds evidence packages from conversation rooms.
type Evidence struct {
	*Connector
}

// ExportMessage is one message of transcript.json.
type ExportMessage struct {
	EventID       id.EventID `json:"event_id"`
	Sender        id.UserID  `json:"sender"`
	Timestamp     int64      `json:"ts"`
	Type          string     `json:"msgtype"`
	Body          string     `json:"body"`
	File          string     `json:"file,omitempty"`
	FileSHA       string     `json:"file_sha256,omitempty"`
	Redacted      bool       `json:"redacted,omitempty"`
	Encrypted     bool       `json:"encrypted"`
	Undecryptable bool       `json:"undecryptable,omitempty"`
	// Who took the message out of the room, and when.
	RedactedBy  id.UserID  `json:"redacted_by,omitempty"`
	RedactedAt  int64      `json:"redacted_at,omitempty"`
	RedactionID id.EventID `json:"redaction_id,omitempty"`
	// Edits by the author, oldest first; the last is the text the guest saw last.
	Revisions []ExportRevision `json:"revisions,omitempty"`
}

// ExportRevision is one edit of a message.
type ExportRevision struct {
	EventID   id.EventID `json:"event_id"`
	Timestamp int64      `json:"ts"`
	Body      string     `json:"body"`
}

// Manifest is manifest.json.
type Manifest struct {
	Format         string            `json:"format"`
	ConversationID string            `json:"conversation_id"`
	RoomID         id.RoomID         `json:"room_id"`
	ExportedAt     int64             `json:"exported_at"`
	ExportedBy     string            `json:"exported_by"`
	Files          map[string]string `json:"files"`
	Messages       []ManifestEntry   `json:"messages"`
	ChainHead      string            `json:"chain_head"`
}

// ManifestEntry chains each message: chain = SHA-256(previous chain || message hash).
type ManifestEntry struct {
	EventID id.EventID `json:"event_id"`
	SHA256  string     `json:"sha256"`
	Chain   string     `json:"chain"`
}

const exportFormat = "no.sikkerchat.export.v1"

// canonicalJSON is how a message is hashed: Go's encoding of the struct, whose
// field order is fixed.
func canonicalJSON(m *ExportMessage) []byte {
	data, _ := json.Marshal(m)
	return data
}

func sha256Hex(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func chainNext(prev, msgHash string) string {
	return sha256Hex([]byte(prev + msgHash))
}

// readRoom pages through the room's history as the bot and decrypts it.
func (ev *Evidence) readRoom(ctx context.Context, roomID id.RoomID) ([]*ExportMessage, map[string][]byte, error) {
	mc, ok := ev.Bridge.Matrix.(*matrix.Connector)
	if !ok || mc.Crypto == nil {
		return nil, nil, ErrEncryptionDisabled
	}
	bot := ev.botIntent()
	var events []*event.Event
	from := ""
	for {
		resp, err := bot.Matrix.Messages(ctx, roomID, from, "", mautrix.DirectionBackward, nil, 100)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to read room history: %w", err)
		}
		events = append(events, resp.Chunk...)
		if resp.End == "" || len(resp.Chunk) == 0 {
			break
		}
		from = resp.End
	}
	// Oldest first, decrypted where the bot has the keys.
	var timeline []roomEvent
	for i := len(events) - 1; i >= 0; i-- {
		evt := events[i]
		evt.RoomID = roomID
		re := roomEvent{evt: evt}
		switch {
		case evt.Unsigned.RedactedBecause != nil && (evt.Type == event.EventEncrypted || evt.Type == event.EventMessage):
			// Redacted: the homeserver keeps no content, only who took it out.
			re.encrypted = evt.Type == event.EventEncrypted
			timeline = append(timeline, re)
			continue
		case evt.Type == event.EventEncrypted:
			re.encrypted = true
			if err := evt.Content.ParseRaw(evt.Type); err != nil {
				continue
			}
			decrypted, err := mc.Crypto.Decrypt(ctx, evt)
			if err != nil {
				re.undecryptable = true
			} else {
				re.evt = decrypted
			}
		case evt.Type == event.EventMessage:
		default:
			continue
		}
		if !re.undecryptable {
			if re.evt.Type != event.EventMessage {
				continue
			}
			_ = re.evt.Content.ParseRaw(re.evt.Type)
		}
		timeline = append(timeline, re)
	}
	download := func(content *event.MessageEventContent) ([]byte, error) {
		return bot.DownloadMedia(ctx, content.URL, content.File)
	}
	return exportMessages(ctx, timeline, download)
}

// roomEvent is one event of a room's history as the export reads it.
type roomEvent struct {
	evt           *event.Event
	encrypted     bool
	undecryptable bool
}

// exportMessages turns a room's history, oldest first, into the messages
// of an evidence package and the files they carry.
func exportMessages(ctx context.Context, timeline []roomEvent, download func(*event.MessageEventContent) ([]byte, error)) ([]*ExportMessage, map[string][]byte, error) {
	// Edits are folded into the message they change, as the room and the
	// guest page show them; an edit by anyone but the author changes nothing.
	authors := map[id.EventID]id.UserID{}
	for _, re := range timeline {
		if !re.undecryptable {
			authors[re.evt.ID] = re.evt.Sender
		}
	}
	revisions := map[id.EventID][]ExportRevision{}
	for _, re := range timeline {
		if re.undecryptable {
			continue
		}
		content := re.evt.Content.AsMessage()
		if target := content.RelatesTo.GetReplaceID(); target != "" && content.NewContent != nil && authors[target] == re.evt.Sender &&
			re.evt.Unsigned.RedactedBecause == nil {
			revisions[target] = append(revisions[target], ExportRevision{EventID: re.evt.ID, Timestamp: re.evt.Timestamp, Body: content.NewContent.Body})
		}
	}
	var messages []*ExportMessage
	files := map[string][]byte{}
	for _, re := range timeline {
		evt := re.evt
		msg := &ExportMessage{EventID: evt.ID, Sender: evt.Sender, Timestamp: evt.Timestamp, Encrypted: re.encrypted}
		if re.undecryptable {
			msg.Undecryptable = true
			messages = append(messages, msg)
			continue
		}
		if by := evt.Unsigned.RedactedBecause; by != nil {
			msg.Redacted, msg.RedactedBy, msg.RedactedAt, msg.RedactionID = true, by.Sender, by.Timestamp, by.ID
			messages = append(messages, msg)
			continue
		}
		content := evt.Content.AsMessage()
		if content.RelatesTo.GetReplaceID() != "" {
			continue // folded into its target above
		}
		msg.Type, msg.Body = string(content.MsgType), content.Body
		msg.Revisions = revisions[evt.ID]
		if content.MsgType.IsMedia() && (content.URL != "" || content.File != nil) {
			data, err := download(content)
			if err != nil {
				zerolog.Ctx(ctx).Warn().Err(err).Stringer("event_id", evt.ID).Msg("Failed to download media for export")
			} else {
				name := fmt.Sprintf("files/%03d-%s", len(files)+1, SafeFileName(content.GetFileName(), DetectFileType(data[:min(len(data), 512)])))
				files[name] = data
				msg.File, msg.FileSHA = name, sha256Hex(data)
			}
		}
		messages = append(messages, msg)
	}
	return messages, files, nil
}

var transcriptTemplate = template.Must(template.New("t").Parse(`<!doctype html>
<html lang="nb"><head><meta charset="utf-8"><title>Samtale {{.M.ConversationID}}</title>
<style>body{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.4}
.m{border-bottom:1px solid #ccc;padding:.5em 0}.s{color:#555;font-size:.9em}</style></head>
<body><h1>Samtale {{.M.ConversationID}}</h1>
<p>Rom {{.M.RoomID}} · eksportert {{.Exported}} av {{.M.ExportedBy}} · {{len .Messages}} meldinger</p>
{{range .Messages}}<div class="m"><div class="s">{{.Sender}} · {{.When}}</div>
{{if .Undecryptable}}<p><em>(kunne ikke dekrypteres)</em></p>{{else if .Redacted}}<p><em>(slettet av {{.RedactedBy}}{{if .RedactedAt}} {{.RedactedWhen}}{{end}})</em></p>{{else}}<p>{{.Body}}</p>{{end}}
{{range .Revisions}}<p class="s">Endret {{.When}}: {{.Body}}</p>{{end}}
{{if .File}}<p>Fil: <a href="{{.File}}">{{.File}}</a> (SHA-256 {{.FileSHA}})</p>{{end}}</div>
{{end}}</body></html>
`))

// BuildExport makes the evidence ZIP for a conversation.
func (ev *Evidence) BuildExport(ctx context.Context, conv *Conversation, actor string) ([]byte, error) {
	messages, files, err := ev.readRoom(ctx, conv.RoomID)
	if err != nil {
		return nil, err
	}
	// A redaction the bridge did not see happen (not every homeserver sends
	// redactions to appservices) is written to the audit trail now, once.
	for _, m := range messages {
		if m.Redacted && m.RedactionID != "" {
			ev.Guard.RecordRedaction(ctx, conv, m.RedactedBy, m.RedactionID, m.EventID)
		}
	}
	audit, err := ev.Audit.ForConversation(ctx, conv.ID)
	if err != nil {
		return nil, err
	}
	// A secure conversation moved from Messenger or Instagram carries that
	// conversation's room too, as a complete package of its own that
	// verify-export checks like any other (linked/social-<id>.zip).
	if ev.Social != nil {
		th, err := ev.DB.Social.GetByLinked(ctx, conv.ID)
		if err != nil {
			return nil, fmt.Errorf("failed to look up the linked social conversation: %w", err)
		} else if th != nil && th.RoomID != "" && th.ID != conv.ID {
			nested, err := ev.BuildExport(ctx, socialAsConversation(th), actor)
			if err != nil {
				return nil, fmt.Errorf("failed to export the linked social conversation: %w", err)
			}
			if files == nil {
				files = map[string][]byte{}
			}
			files["linked/social-"+th.ID+".zip"] = nested
		}
	}
	return AssembleExport(conv, actor, messages, files, audit)
}

// AssembleExport writes the package from what was read.
func AssembleExport(conv *Conversation, actor string, messages []*ExportMessage, files map[string][]byte, audit []*AuditRow) ([]byte, error) {
	var err error
	manifest := &Manifest{
		Format: exportFormat, ConversationID: conv.ID, RoomID: conv.RoomID,
		ExportedAt: time.Now().UnixMilli(), ExportedBy: actor, Files: map[string]string{},
	}
	chain := ""
	for _, m := range messages {
		h := sha256Hex(canonicalJSON(m))
		chain = chainNext(chain, h)
		manifest.Messages = append(manifest.Messages, ManifestEntry{EventID: m.EventID, SHA256: h, Chain: chain})
	}
	manifest.ChainHead = chain
	transcriptJSON, _ := json.MarshalIndent(messages, "", "  ")
	auditJSON, _ := json.MarshalIndent(audit, "", "  ")
	when := func(ms int64) string { return time.UnixMilli(ms).In(oslo).Format("02.01.2006 15:04:05") }
	type revisionView struct {
		ExportRevision
		When string
	}
	type view struct {
		*ExportMessage
		When, RedactedWhen string
		Revisions          []revisionView
	}
	views := make([]view, 0, len(messages))
	for _, m := range messages {
		v := view{ExportMessage: m, When: when(m.Timestamp), RedactedWhen: when(m.RedactedAt)}
		for _, r := range m.Revisions {
			v.Revisions = append(v.Revisions, revisionView{r, when(r.Timestamp)})
		}
		views = append(views, v)
	}
	var html bytes.Buffer
	if err = transcriptTemplate.Execute(&html, map[string]any{
		"M": manifest, "Messages": views, "Exported": time.UnixMilli(manifest.ExportedAt).In(oslo).Format("02.01.2006 15:04"),
	}); err != nil {
		return nil, err
	}
	contents := map[string][]byte{"transcript.json": transcriptJSON, "transcript.html": html.Bytes(), "audit.json": auditJSON}
	for name, data := range files {
		contents[name] = data
	}
	for name, data := range contents {
		manifest.Files[name] = sha256Hex(data)
	}
	manifestJSON, _ := json.MarshalIndent(manifest, "", "  ")
	return writeExportZip(manifestJSON, contents, manifest.ExportedAt)
}

// writeExportZip lays the package out canonically: manifest first, then the
// files by name, stored uncompressed with the export time. The same contents
// always give the same bytes, which lets verify-export notice a change to any
// byte of the archive, not only to the files in it.
func writeExportZip(manifestJSON []byte, contents map[string][]byte, exportedAt int64) ([]byte, error) {
	names := make([]string, 0, len(contents))
	for name := range contents {
		names = append(names, name)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	modified := time.UnixMilli(exportedAt).UTC()
	write := func(name string, data []byte) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store, Modified: modified})
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	if err := write("manifest.json", manifestJSON); err != nil {
		return nil, err
	}
	for _, name := range names {
		if err := write(name, contents[name]); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Export builds the package, uploads it encrypted into the room and writes
// it to evidence_dir when one is configured.
func (ev *Evidence) Export(ctx context.Context, conv *Conversation, actor string) (string, error) {
	data, err := ev.BuildExport(ctx, conv, actor)
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("sikkerchat-%s-%s.zip", conv.ID, time.Now().In(oslo).Format("20060102-150405"))
	if ev.Config.EvidenceDir != "" {
		if err = os.MkdirAll(ev.Config.EvidenceDir, 0o700); err == nil {
			err = os.WriteFile(filepath.Join(ev.Config.EvidenceDir, name), data, 0o600)
		}
		if err != nil {
			return "", fmt.Errorf("failed to write export to evidence_dir: %w", err)
		}
	}
	if err = ev.Matrix.SendExport(ctx, conv, name, data); err != nil {
		return "", err
	}
	if err = ev.Audit.Append(ctx, actor, AuditExport, conv.ID, "sha256 "+sha256Hex(data)); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for export")
	}
	return name, nil
}
