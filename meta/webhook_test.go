package meta

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return data
}

// Meta signs the bytes it sends, in its own escaped form: the check must run
// on the raw body, and a body decoded and encoded again no longer matches.
func TestSignatureIsCheckedOnTheRawBody(t *testing.T) {
	body := fixture(t, "webhooks/messenger_batched_escaped.json")
	require.Contains(t, string(body), `\u00c6`, "the fixture carries Meta's escaped form")
	sig := Sign("app-secret", body)
	require.Regexp(t, `^sha256=[0-9a-f]{64}$`, sig)
	require.NoError(t, VerifySignature(body, sig, "app-secret"))

	var v any
	require.NoError(t, json.Unmarshal(body, &v))
	reencoded, _ := json.Marshal(v)
	require.ErrorIs(t, VerifySignature(reencoded, sig, "app-secret"), ErrBadSignature, "a re-serialising verifier would fail")

	for _, tc := range []struct {
		name, header string
		secrets      []string
		want         error
	}{
		{"missing", "", []string{"app-secret"}, ErrNoSignature},
		{"wrong secret", Sign("other", body), []string{"app-secret"}, ErrBadSignature},
		{"sha1 form", "sha1=" + strings.Repeat("0", 40), []string{"app-secret"}, ErrBadSignature},
		{"no prefix", strings.TrimPrefix(sig, "sha256="), []string{"app-secret"}, ErrBadSignature},
		{"short", sig[:40], []string{"app-secret"}, ErrBadSignature},
		{"not hex", "sha256=" + strings.Repeat("z", 64), []string{"app-secret"}, ErrBadSignature},
		{"uppercase hex of the right sum", strings.ToUpper(sig[7:]) + "", []string{"app-secret"}, ErrBadSignature},
		{"no secret configured", sig, []string{""}, ErrBadSignature},
		{"second secret (rotation)", sig, []string{"old", "app-secret"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifySignature(body, tc.header, tc.secrets...)
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
	// One changed byte anywhere fails.
	tampered := append([]byte(nil), body...)
	tampered[len(tampered)/2] ^= 1
	require.ErrorIs(t, VerifySignature(tampered, sig, "app-secret"), ErrBadSignature)
}

func TestHandshake(t *testing.T) {
	q := func(mode, token, challenge string) url.Values {
		return url.Values{"hub.mode": {mode}, "hub.verify_token": {token}, "hub.challenge": {challenge}}
	}
	challenge, ok := Handshake(q("subscribe", "vt", "1158201444"), "vt")
	require.True(t, ok)
	require.Equal(t, "1158201444", challenge)
	for name, query := range map[string]url.Values{
		"wrong token":            q("subscribe", "nope", "1158201444"),
		"unsubscribe":            q("unsubscribe", "vt", "1158201444"),
		"no challenge":           q("subscribe", "vt", ""),
		"challenge not a number": q("subscribe", "vt", "<script>"),
		"huge challenge":         q("subscribe", "vt", strings.Repeat("1", 65)),
		"nothing":                {},
	} {
		_, ok := Handshake(query, "vt")
		require.False(t, ok, name)
	}
	_, ok = Handshake(q("subscribe", "", "1"), "")
	require.False(t, ok, "no verify token configured: nothing verifies")
}

// Every documented example parses into the event it is.
func TestDocumentedWebhookExamplesParse(t *testing.T) {
	for _, tc := range []struct {
		file     string
		platform Platform
		kinds    []EventKind
		check    func(t *testing.T, evts []Event)
	}{
		{"messenger_text_quick_reply.json", Messenger, []EventKind{KindMessage}, func(t *testing.T, e []Event) {
			require.Equal(t, "hello, world!", e[0].Message.Text)
			require.Equal(t, "7010000000000001", e[0].Person)
			require.Equal(t, "106512345678901", e[0].Account)
			require.Equal(t, "mid.1457764197618:41d102a3e1ae206a38", e[0].ID())
			require.Equal(t, time.UnixMilli(1458692752478), e[0].Time)
		}},
		{"messenger_reply.json", Messenger, []EventKind{KindMessage}, func(t *testing.T, e []Event) {
			require.Equal(t, "m_1fTq8oLumEyIp3Q2MR-aY7IfLZDamVrALniheU", e[0].Message.ReplyTo.MID)
		}},
		{"messenger_attachment.json", Messenger, []EventKind{KindMessage}, func(t *testing.T, e []Event) {
			require.Len(t, e[0].Message.Attachments, 1)
			require.Equal(t, "https://scontent.xx.fbcdn.net/v/t1.15752-9/attachment.jpg?_nc_cat=1&oh=abc&oe=5F00", e[0].Message.Attachments[0].MediaURL())
		}},
		{"messenger_sticker.json", Messenger, []EventKind{KindMessage}, func(t *testing.T, e []Event) {
			require.Equal(t, FlexString("369239263222822"), e[0].Message.Attachments[0].Payload.StickerID)
		}},
		{"messenger_echo.json", Messenger, []EventKind{KindEcho}, func(t *testing.T, e []Event) {
			require.Equal(t, "7010000000000001", e[0].Person, "an echo is about the person it was sent to")
			require.Equal(t, FlexString("1517776481860111"), e[0].Message.AppID)
		}},
		{"messenger_echo_standby.json", Messenger, []EventKind{KindEcho}, func(t *testing.T, e []Event) {
			require.Equal(t, FlexString("1517776481860111"), e[0].Message.AppID, "app_id as a string")
			require.Equal(t, "template", e[0].Message.Attachments[0].Type)
			require.Empty(t, e[0].Message.Attachments[0].MediaURL())
		}},
		{"messenger_read.json", Messenger, []EventKind{KindRead}, func(t *testing.T, e []Event) {
			require.Equal(t, Timestamp(1458668856253), e[0].Read.Watermark)
		}},
		{"messenger_delivery.json", Messenger, []EventKind{KindDelivery}, func(t *testing.T, e []Event) {
			require.True(t, e[0].Time.IsZero(), "Meta's example has no timestamp")
			require.Equal(t, []string{"mid.1458668856218:ed81099e15d3f4f233"}, e[0].Delivery.MIDs)
		}},
		{"messenger_postback.json", Messenger, []EventKind{KindPostback}, func(t *testing.T, e []Event) {
			require.Equal(t, "TITLE-FOR-THE-CTA", e[0].Postback.Title)
			require.Equal(t, "m_1457764197618:41d102a3e1ae206a38", e[0].ID())
		}},
		{"messenger_reaction.json", Messenger, []EventKind{KindReaction}, func(t *testing.T, e []Event) {
			require.Equal(t, "\u2764\uFE0F", e[0].Reaction.Emoji)
		}},
		{"messenger_edit.json", Messenger, []EventKind{KindEdit}, func(t *testing.T, e []Event) {
			require.Equal(t, "hello, world (edited)", e[0].MessageEdit.Text)
			require.Equal(t, FlexString("1"), e[0].MessageEdit.NumEdit)
		}},
		{"messenger_batched_escaped.json", Messenger, []EventKind{KindMessage, KindMessage, KindRead}, func(t *testing.T, e []Event) {
			require.Equal(t, "Hei, jeg heter Æsa og bor på Øya", e[0].Message.Text)
			require.Equal(t, "link: https://example.org/a", e[1].Message.Text)
			require.Equal(t, "7010000000000002", e[1].Person)
		}},
		{"instagram_text.json", Instagram, []EventKind{KindMessage}, func(t *testing.T, e []Event) {
			require.Equal(t, "17841400000000001", e[0].Account)
			require.Equal(t, "6720000000000001", e[0].Person)
		}},
		{"instagram_deleted.json", Instagram, []EventKind{KindDeleted}, func(t *testing.T, e []Event) {
			require.Equal(t, "deleted:aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx", e[0].ID(), "a deletion is not the message it deletes")
		}},
		{"instagram_story_mention.json", Instagram, []EventKind{KindMessage}, func(t *testing.T, e []Event) {
			require.Equal(t, "story_mention", e[0].Message.Attachments[0].Type)
			require.Empty(t, e[0].Message.Attachments[0].MediaURL(), "a story is not downloaded as a file")
		}},
		{"instagram_like_heart.json", Instagram, []EventKind{KindMessage}, nil},
		{"instagram_reaction.json", Instagram, []EventKind{KindReaction}, nil},
		{"instagram_seen.json", Instagram, []EventKind{KindRead}, func(t *testing.T, e []Event) {
			require.Equal(t, "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQx", e[0].Read.MID)
		}},
		{"instagram_echo.json", Instagram, []EventKind{KindEcho}, func(t *testing.T, e []Event) {
			require.Equal(t, "6720000000000001", e[0].Person)
			require.Empty(t, e[0].Message.AppID)
		}},
		{"dashboard_test_changes.json", Instagram, []EventKind{KindMessage}, func(t *testing.T, e []Event) {
			require.Equal(t, time.UnixMilli(1527459824000), e[0].Time, "string seconds read as milliseconds")
			require.Equal(t, "23245", e[0].Account, "entry id 0: the account is the recipient")
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			evts, err := Parse(fixture(t, "webhooks/"+tc.file))
			require.NoError(t, err)
			var kinds []EventKind
			for _, e := range evts {
				require.Equal(t, tc.platform, e.Platform)
				kinds = append(kinds, e.Kind)
			}
			require.Equal(t, tc.kinds, kinds)
			if tc.check != nil {
				tc.check(t, evts)
			}
		})
	}
}

// Events without a message ID are told apart by their content, and a retry
// of the same delivery gives the same IDs.
func TestEventIDsAreStableAndDistinct(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"messenger_read.json", "messenger_delivery.json", "messenger_reaction.json",
		"instagram_seen.json", "instagram_reaction.json", "messenger_edit.json", "messenger_batched_escaped.json"} {
		body := fixture(t, "webhooks/"+name)
		a, err := Parse(body)
		require.NoError(t, err)
		b, err := Parse(body)
		require.NoError(t, err)
		for i := range a {
			require.Equal(t, a[i].ID(), b[i].ID())
			require.NotContains(t, seen, a[i].ID(), "%s repeats the ID of %s", name, seen[a[i].ID()])
			seen[a[i].ID()] = name
		}
	}
}

func TestMalformedDeliveries(t *testing.T) {
	for name, body := range map[string]string{
		"not json":       `{"object":`,
		"array":          `[{"object":"page","entry":[]}]`,
		"other object":   `{"object":"whatsapp_business_account","entry":[]}`,
		"no object":      `{"entry":[]}`,
		"bad timestamp":  `{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":"soon","message":{"mid":"m","text":"x"}}]}]}`,
		"entry not list": `{"object":"page","entry":{}}`,
	} {
		_, err := Parse([]byte(body))
		require.ErrorIs(t, err, ErrMalformed, name)
	}
	// Unknown fields and kinds are not errors: Meta adds them over time.
	evts, err := Parse([]byte(`{"object":"page","new_field":1,"entry":[{"id":"1","time":1,"messaging":[
		{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1700000000000,"pass_thread_control":{"new_owner_app_id":"1"}},
		{"sender":{"id":"2"},"recipient":{"id":"1"},"timestamp":1700000000000,"message":{"mid":"m1","text":"x","brand_new":{"a":1}}},
		{"sender":{"user_ref":"ref"},"recipient":{"id":"1"},"timestamp":1700000000000,"message":{"mid":"m2","text":"plugin"}}
	],"changes":[{"field":"feed","value":{"item":"post"}}]}]}`))
	require.NoError(t, err)
	require.Len(t, evts, 1, "only the message from a person with an ID is an event")
	require.Equal(t, "m1", evts[0].ID())
}

func TestTimestampsInSecondsOrMilliseconds(t *testing.T) {
	for in, want := range map[string]int64{
		`1458692752478`:   1458692752478,
		`1527459824`:      1527459824000,
		`"1527459824"`:    1527459824000,
		`"1458692752478"`: 1458692752478,
		`1.527459824e9`:   1527459824000,
		`null`:            0,
	} {
		var ts Timestamp
		require.NoError(t, json.Unmarshal([]byte(in), &ts), in)
		require.Equal(t, Timestamp(want), ts, in)
	}
}

// Whatever a webhook body holds, reading it never panics, and every event it
// yields names a person and an account that differ (what the bridge keys a
// conversation on).
func FuzzParse(f *testing.F) {
	entries, _ := os.ReadDir(filepath.Join("testdata", "webhooks"))
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join("testdata", "webhooks", e.Name()))
		if err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(`{"object":"page","entry":[{"id":"1","messaging":[{"sender":{"id":"1"},"recipient":{"id":"1"},"message":{"mid":"m"}}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		evts, err := Parse(body)
		if err != nil {
			return
		}
		for _, e := range evts {
			if e.Person == "" || e.Account == "" || e.Person == e.Account {
				t.Fatalf("event without a distinct person and account: %+v", e)
			}
			if e.ID() == "" {
				t.Fatalf("event without an ID: %+v", e)
			}
		}
	})
}

// Every documented event survives the form it is kept in between arrival and
// handling: the same kind, person, time, ID and content.
func TestStoredEventsReadBackAsParsed(t *testing.T) {
	files, err := os.ReadDir("testdata/webhooks")
	require.NoError(t, err)
	n := 0
	for _, f := range files {
		events, err := Parse(fixture(t, "webhooks/"+f.Name()))
		if err != nil {
			continue // the malformed fixtures
		}
		for _, e := range events {
			data, err := e.Encode()
			require.NoError(t, err)
			back, err := DecodeEvent(data)
			require.NoError(t, err, f.Name())
			require.Equal(t, e, back, f.Name())
			require.Equal(t, e.ID(), back.ID())
			n++
		}
	}
	require.Greater(t, n, 20)
	for _, bad := range []string{``, `{}`, `{"platform":"tiktok","account":"1","messaging":{}}`,
		`{"platform":"messenger","account":"1","messaging":{"sender":{"id":"1"},"recipient":{"id":"1"},"message":{"mid":"m"}}}`} {
		_, err := DecodeEvent([]byte(bad))
		require.ErrorIs(t, err, ErrMalformed, bad)
	}
}
