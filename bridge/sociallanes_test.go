package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/event"
)

// mp4Header is the start of a phone's video: an ftyp box with a known brand.
var mp4Header = []byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")

// attachmentBody is a person's message with one attachment.
func attachmentBody(person, mid, typ, url string, ts int64) string {
	return fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":%[3]q},"recipient":{"id":%[1]q},"timestamp":%[2]d,"message":{"mid":%[4]q,"attachments":[{"type":%[5]q,"payload":{"url":%[6]q}}]}}]}]}`,
		socPage, ts, person, mid, typ, url)
}

// A video the homeserver refuses as too large becomes a notice in its room
// (kind and size, from the bot), and the text another person sent after it
// reaches that person's room in the same round: order is kept per person,
// not across people.
func TestAttachmentTheHomeserverRefusesHoldsUpNobody(t *testing.T) {
	b := newSocBridge(t, nil)
	video := append(bytes.Clone(mp4Header), bytes.Repeat([]byte{0}, 15_000_000)...)
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(video) }))
	defer cdn.Close()
	b.allowCDN(cdn.URL)
	b.room.uploadLimit = 10 << 20 // Dendrite's default; not known to the bridge here
	now := time.Now().UnixMilli()
	require.Equal(t, 200, b.postSigned(attachmentBody("pA", "m_video", "video", cdn.URL+"/v.mp4?oh=sig", now)).Code)
	require.Equal(t, 200, b.postSigned(messengerText("pB", "m_text", "hei fra B", now+1)).Code)
	require.False(t, b.drain(), "nothing left to try")

	roomB := b.conversationOf("pB")
	require.Equal(t, []string{"hei fra B"}, bodies(b.room.sentBy(roomB.GhostID)))
	roomA := b.conversationOf("pA")
	require.Empty(t, b.room.sentBy(roomA.GhostID), "no file from A")
	notices := b.room.sentBy("")
	require.Len(t, notices, 1)
	require.Equal(t, roomA.RoomID, notices[0].Room)
	require.Equal(t, "Et vedlegg fra personen kunne ikke hentes inn (videoklipp, 15,0 MB). Matrix-serveren tok ikke imot det.", notices[0].body())
	require.Equal(t, 0, b.stored())
}

// With the homeserver's limit known, nothing above it is downloaded: the
// notice names the limit, and the upload is never tried.
func TestAttachmentsAreCappedAtTheHomeserversLimit(t *testing.T) {
	b := newSocBridge(t, nil)
	video := append(bytes.Clone(mp4Header), bytes.Repeat([]byte{0}, 2_000_000-len(mp4Header))...)
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(video))) // as Meta's CDN does
		_, _ = w.Write(video)
	}))
	defer cdn.Close()
	b.allowCDN(cdn.URL)
	b.sc.SetMaxFileSize(1_000_000)
	require.Equal(t, int64(1_000_000), b.s.maxAttachment())
	b.postSigned(attachmentBody("pA", "m_video", "video", cdn.URL+"/v.mp4", time.Now().UnixMilli()))
	require.False(t, b.drain())
	require.Empty(t, b.room.files, "no upload")
	notices := b.room.sentBy("")
	require.Len(t, notices, 1)
	// The size comes from what the CDN declared: refused before reading.
	require.Equal(t, "Et vedlegg fra personen kunne ikke hentes inn (videoklipp, 2,0 MB). Det er større enn grensen på 1,0 MB.", notices[0].body())

	b.sc.SetMaxFileSize(0)
	require.Equal(t, int64(25<<20), b.s.maxAttachment(), "Meta's own limit when the homeserver's is not known")
}

// While a person's attachment is still downloading, the running inbox brings
// another person's text to their room: lanes are worked on side by side.
func TestSlowAttachmentDoesNotHoldUpAnotherPerson(t *testing.T) {
	b := newSocBridge(t, nil)
	release := make(chan struct{})
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = w.Write(mp4Header)
	}))
	defer cdn.Close()
	defer close(release)
	b.allowCDN(cdn.URL)
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.s.runInbox(ctx)
	}()
	defer func() { cancel(); <-done }()
	now := time.Now().UnixMilli()
	b.postSigned(attachmentBody("pA", "m_slow", "video", cdn.URL+"/slow.mp4", now))
	b.postSigned(messengerText("pB", "m_b", "hei fra B", now+1))
	b.postSigned(messengerText("pA", "m_a2", "A igjen", now+2))
	require.Eventually(t, func() bool {
		b.room.mu.Lock()
		defer b.room.mu.Unlock()
		for _, s := range b.room.sent {
			if s.body() == "hei fra B" {
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "B's text while A's download hangs")
	b.room.mu.Lock()
	for _, s := range b.room.sent {
		require.NotEqual(t, "A igjen", s.body(), "A's next message waits for A's attachment")
	}
	b.room.mu.Unlock()
	release <- struct{}{}
	require.Eventually(t, func() bool {
		b.room.mu.Lock()
		defer b.room.mu.Unlock()
		return len(b.room.sent) == 3
	}, 20*time.Second, 10*time.Millisecond)
	a := b.room.sentBy(b.conversationOf("pA").GhostID)
	require.Equal(t, []string{"video-1.mp4", "A igjen"}, bodies(a), "A's order kept")
}

// An event the homeserver keeps refusing (while others get through) is given
// up after laneMaxAttempts tries, the room is told once, and the person's
// next messages follow; nothing else waited for it.
func TestEventThatKeepsFailingIsGivenUp(t *testing.T) {
	b := newSocBridge(t, nil)
	now := time.Now().UnixMilli()
	b.postSigned(messengerText("pA", "m_ok", "første", now))
	require.False(t, b.drain())
	b.room.refuse = "knust"
	b.postSigned(messengerText("pA", "m_broken", "en knust melding", now+1))
	b.postSigned(messengerText("pA", "m_after", "etter", now+2))
	for i := range laneMaxAttempts - 1 {
		// Another person gets through meanwhile: the failures are A's own.
		b.postSigned(messengerText("pB", fmt.Sprintf("m_b%d", i), fmt.Sprintf("B %d", i), now+10+int64(i)))
		require.True(t, b.drain(), "try %d", i+1)
		require.NotContains(t, bodies(b.room.sentBy(b.conversationOf("pA").GhostID)), "etter")
		b.later(laneMaxBackoff)
	}
	require.False(t, b.drain(), "the last try gives it up and tells the room")
	roomA := b.conversationOf("pA")
	require.Equal(t, []string{"første", "etter"}, bodies(b.room.sentBy(roomA.GhostID)))
	require.Len(t, b.room.sentBy(b.conversationOf("pB").GhostID), laneMaxAttempts-1)
	notices := b.room.sentBy("")
	require.Len(t, notices, 1)
	require.Equal(t, roomA.RoomID, notices[0].Room)
	require.Equal(t, fmt.Sprintf("En melding fra personen på Messenger kunne ikke hentes inn etter %d forsøk og er gitt opp. Be personen sende den på nytt hvis den var viktig.", laneMaxAttempts),
		notices[0].body())
	require.Empty(t, notices[0].Content.Parsed.(*event.MessageEventContent).Mentions.UserIDs)

	// Meta sending it again (in another batch) does not start it over.
	b.room.refuse = ""
	b.postSigned(fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":"pA"},"recipient":{"id":%[1]q},"timestamp":%[3]d,"message":{"mid":"m_broken","text":"en knust melding"}}]}]}`, socPage, now+50, now+1))
	require.False(t, b.drain())
	require.NotContains(t, bodies(b.room.sentBy(roomA.GhostID)), "en knust melding")
	require.NotContains(t, b.logText(), "knust")
}

// Attachment URLs that are not Meta's CDN are never fetched: not over http,
// not on a loopback port, not the cloud metadata address; the room is told.
// A shared link is shown as a link and never fetched either.
func TestAttachmentsOnlyComeFromMetasCDN(t *testing.T) {
	b := newSocBridge(t, nil) // the default: Meta's CDN domains only
	var hits atomic.Int64
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("\x89PNG\r\n\x1a\n"))
	}))
	defer local.Close()
	now := time.Now().UnixMilli()
	for i, url := range []string{
		local.URL + "/loopback.png",
		"https://169.254.169.254/latest/meta-data/iam/security-credentials/",
		"http://scontent.xx.fbcdn.net/v/t1/x.jpg",
		"https://example.org/x.jpg",
	} {
		b.postSigned(attachmentBody(fmt.Sprintf("p%d", i), fmt.Sprintf("m_%d", i), "image", url, now+int64(i)))
	}
	b.postSigned(fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":"pL"},"recipient":{"id":%[1]q},"timestamp":%[2]d,"message":{"mid":"m_link","attachments":[{"type":"fallback","title":"Se denne","URL":%[3]q,"payload":null}]}}]}]}`,
		socPage, now+10, local.URL+"/shared-link"))
	require.False(t, b.drain())
	require.Zero(t, hits.Load(), "nothing fetched")
	notices := b.room.sentBy("")
	require.Len(t, notices, 4)
	for _, n := range notices {
		require.Equal(t, "Et vedlegg fra personen kunne ikke hentes inn (bilde). Adressen er ikke en av Metas egne servere, så den ble ikke åpnet.", n.body())
	}
	require.Equal(t, []string{"[Lenke: Se denne] " + local.URL + "/shared-link"}, bodies(b.room.sentBy(b.conversationOf("pL").GhostID)))
	require.NotContains(t, b.logText(), "169.254.169.254")
}

// What Meta carries but a guest could not send either (here a Windows
// program called a file) is not brought over; the room hears its type.
func TestAttachmentsOfTypesGuestsCannotSendAreNotBroughtOver(t *testing.T) {
	b := newSocBridge(t, nil)
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(append([]byte("MZ\x90\x00\x03\x00\x00\x00"), bytes.Repeat([]byte{0}, 100)...))
	}))
	defer cdn.Close()
	b.allowCDN(cdn.URL)
	b.postSigned(attachmentBody("pA", "m_exe", "file", cdn.URL+"/invoice.pdf", time.Now().UnixMilli()))
	require.False(t, b.drain())
	require.Empty(t, b.room.files)
	notices := b.room.sentBy("")
	require.Len(t, notices, 1)
	require.Equal(t, "Et vedlegg fra personen kunne ikke hentes inn (fil, 108 B). Filtypen (application/octet-stream) tas ikke imot, av samme grunn som på den sikre siden.", notices[0].body())
}

// What the bridge sends for a person mentions nobody: an empty m.mentions,
// so that no legacy push rule fires on a name a stranger typed.
func TestPersonsMessagesMentionNobody(t *testing.T) {
	b := newSocBridge(t, nil)
	now := time.Now().UnixMilli()
	b.postSigned(messengerText("pA", "m_1", "@room patrulje hjelp", now))
	b.postSigned(fmt.Sprintf(`{"object":"page","entry":[{"id":%[1]q,"time":%[2]d,"messaging":[{"sender":{"id":"pA"},"recipient":{"id":%[1]q},"timestamp":%[2]d,"message_edit":{"mid":"m_1","text":"@room endret","num_edit":1}}]}]}`, socPage, now+1))
	require.False(t, b.drain())
	sent := b.room.sentBy(b.conversationOf("pA").GhostID)
	require.Len(t, sent, 2)
	for _, s := range sent {
		msg := s.Content.Parsed.(*event.MessageEventContent)
		require.NotNil(t, msg.Mentions, s.body())
		require.Empty(t, msg.Mentions.UserIDs)
		require.False(t, msg.Mentions.Room)
		raw, err := json.Marshal(msg)
		require.NoError(t, err)
		require.Contains(t, string(raw), `"m.mentions":{}`)
	}
	require.NotNil(t, sent[1].Content.Parsed.(*event.MessageEventContent).NewContent.Mentions, "the edit's new content too")
	require.True(t, strings.HasPrefix(sent[1].body(), "* "))
}
