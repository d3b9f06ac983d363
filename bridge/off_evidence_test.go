package bridge

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
)

// offOpenUpload fetches an encrypted attachment from the homeserver double
// and decrypts it with the key in the message, as an officer's client does.
func (ob *offBridge) offOpenUpload(msg offMessage) []byte {
	ob.t.Helper()
	data, err := json.Marshal(msg.Content)
	require.NoError(ob.t, err)
	var content event.MessageEventContent
	require.NoError(ob.t, json.Unmarshal(data, &content))
	require.NotNil(ob.t, content.File, "the file is encrypted")
	require.Empty(ob.t, content.URL, "no unencrypted copy")
	ob.hs.mu.Lock()
	ciphertext := bytes.Clone(ob.hs.media[string(content.File.URL)])
	ob.hs.mu.Unlock()
	require.NotEmpty(ob.t, ciphertext)
	require.NoError(ob.t, content.File.DecryptInPlace(ciphertext))
	return ciphertext
}

// offZipFile reads one file of a ZIP.
func offZipFile(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err)
	f, err := zr.Open(name)
	require.NoError(t, err)
	defer f.Close()
	out, err := io.ReadAll(f)
	require.NoError(t, err)
	return out
}

// `export` puts an evidence package into the room as an encrypted file,
// with the SHA-256 of the original bytes; the package checks out, holds the
// conversation's messages, and the audit trail records its hash.
func TestExportCommandPutsAnEncryptedEvidencePackageInTheRoom(t *testing.T) {
	evidence := filepath.Join(t.TempDir(), "bevis")
	ob := newOffBridge(t, func(c *Config) { c.EvidenceDir = evidence })
	created := ob.newConversation(offOfficer, "")
	ob.joinGuest(created)
	_, _, err := ob.sc.Guests.QueueText(ob.ctx, ob.conv(created.conv.ID), "off-export-client-0001", "MARKER-fra-gjesten")
	require.NoError(t, err)
	require.False(t, ob.sc.Outbox.RunOnce(ob.ctx), "the guest's message reaches the room")

	body := ob.reply(offOfficer, created.room, "export").body()
	m := regexp.MustCompile(`^Bevispakken (sikkerchat-` + created.conv.ID + `-\d{8}-\d{6}\.zip) er lagt i rommet \(kryptert\)\.`).FindStringSubmatch(body)
	require.NotNil(t, m, body)
	name := m[1]

	var file offMessage
	for _, msg := range ob.messages(created.room) {
		if msg.Content["msgtype"] == "m.file" {
			file = msg
		}
	}
	require.Equal(t, name, file.body())
	require.True(t, file.Encrypted)
	require.Equal(t, offBot, file.Sender)
	pkg := ob.offOpenUpload(file)
	sum := sha256.Sum256(pkg)
	require.Equal(t, hex.EncodeToString(sum[:]), file.Content["no.sikkerchat.sha256"])
	require.Empty(t, VerifyExportBytes(pkg), "the package checks out")
	require.Contains(t, string(offZipFile(t, pkg, "transcript.json")), "MARKER-fra-gjesten")
	var manifest Manifest
	require.NoError(t, json.Unmarshal(offZipFile(t, pkg, "manifest.json"), &manifest))
	require.Equal(t, created.conv.ID, manifest.ConversationID)
	require.Equal(t, offOfficer.String(), manifest.ExportedBy)

	last := ob.lastAudit(created.conv.ID)
	require.Equal(t, []string{AuditExport, offOfficer.String(), "sha256 " + hex.EncodeToString(sum[:])}, []string{last.Action, last.Actor, last.Detail})
	require.NotContains(t, ob.hs.allTraffic(), "MARKER-fra-gjesten", "the package reached the homeserver only encrypted")

	saved, err := os.ReadFile(filepath.Join(evidence, name))
	require.NoError(t, err)
	require.Equal(t, pkg, saved, "the same package is kept in evidence_dir")
	info, err := os.Stat(filepath.Join(evidence, name))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
}

// A case system gets the package itself: a ZIP download named after the
// conversation, recorded in the audit trail by its hash, and nothing posted
// into the room.
func TestProvisioningExportAnswersTheEvidencePackage(t *testing.T) {
	ob := newOffBridge(t, nil)
	created := ob.newConversation(offOfficer, "")
	rec := ob.prov("POST", "/conversations/"+created.conv.ID+"/export", offAdmin, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, "application/zip", rec.Header().Get("Content-Type"))
	require.Equal(t, `attachment; filename="sikkerchat-`+created.conv.ID+`.zip"`, rec.Header().Get("Content-Disposition"))
	pkg := rec.Body.Bytes()
	require.Empty(t, VerifyExportBytes(pkg))
	var manifest Manifest
	require.NoError(t, json.Unmarshal(offZipFile(t, pkg, "manifest.json"), &manifest))
	require.Equal(t, created.room, manifest.RoomID)
	require.Equal(t, IntegratorActor, manifest.ExportedBy)

	sum := sha256.Sum256(pkg)
	last := ob.lastAudit(created.conv.ID)
	require.Equal(t, []string{AuditExport, IntegratorActor, "sha256 " + hex.EncodeToString(sum[:])}, []string{last.Action, last.Actor, last.Detail})
	require.Empty(t, ob.hs.requestsTo("/upload"))

	offProvError(t, ob.prov("POST", "/conversations/"+created.conv.ID+"/export", offColleague, ""), http.StatusNotFound, "M_NOT_FOUND")
	ob.hs.failOn("/messages")
	msg := offProvError(t, ob.prov("POST", "/conversations/"+created.conv.ID+"/export", offOfficer, ""), http.StatusInternalServerError, "M_UNKNOWN")
	require.Equal(t, "Failed to build the export", msg)
	require.Equal(t, 1, offCount(offActions(ob.audit(created.conv.ID)), AuditExport))
}
