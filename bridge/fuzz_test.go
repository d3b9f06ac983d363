package bridge

import (
	"bytes"
	"path"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for everything that reads guest input. `go test` runs the
// seeds; `go test -fuzz=FuzzX ./bridge` searches further.

func FuzzNormalizeCode(f *testing.F) {
	for _, seed := range []string{"tiger 47", " Tiger-47 ", "TIGER.47", "", "ÆØÅ 12", "\x00\xff", strings.Repeat("a", 200)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, code string) {
		n := NormalizeCode(code)
		if NormalizeCode(n) != n {
			t.Fatalf("normalising is not idempotent: %q -> %q", code, n)
		}
		if strings.ContainsAny(n, " -.\t\n") || (utf8.ValidString(code) && !utf8.ValidString(n)) {
			t.Fatalf("normalised code %q keeps separators or breaks UTF-8", n)
		}
		token, _, _ := NewInviteToken()
		if !CheckCode(token, code, CodeMAC(token, n)) {
			t.Fatal("a code must match its own normal form")
		}
	})
}

func FuzzParseInviteToken(f *testing.F) {
	valid, _, _ := NewInviteToken()
	for _, seed := range []string{valid, "", "abc", valid + "=", valid[:42], "%2F%2F", strings.Repeat("A", 43)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		if ParseInviteToken(token) == nil && len(token) != 43 {
			t.Fatalf("accepted a token of length %d", len(token))
		}
	})
}

func FuzzDetectFileType(f *testing.F) {
	for _, seed := range []string{"\x89PNG\r\n\x1a\n", "%PDF-1.7", "MZ\x90\x00ftypisom", "<htmftypmp42", "\x00\x00\x00\x18ftypevil", "\x00\x00\x00\x18ftypheic", "\x00\x00\x00\x18ftyp", "<html>", "MZ", "RIFF\x00\x00\x00\x00WAVE", ""} {
		f.Add([]byte(seed), "image/png")
	}
	f.Fuzz(func(t *testing.T, head []byte, claimed string) {
		detected := DetectFileType(head)
		if detected == "" {
			t.Fatal("no type at all")
		}
		_ = ClaimMatches(claimed, detected)
		if FileTypeAllowed(detected) && strings.HasPrefix(detected, "text/") {
			t.Fatalf("text type %q allowed", detected)
		}
		// Executables and pages never pass as an allowed type, whatever follows.
		if FileTypeAllowed(detected) && (bytes.HasPrefix(head, []byte("MZ")) || bytes.HasPrefix(head, []byte("<")) || bytes.HasPrefix(head, []byte("\x7fELF"))) {
			t.Fatalf("%q taken as %s", head[:min(len(head), 16)], detected)
		}
	})
}

func FuzzSafeFileName(f *testing.F) {
	for _, seed := range []string{"bilde.png", "bilde.html", "a.png.exe", ".png", "x.PNG", "../../etc/passwd", "a\"b\r\n.png", "", "..", strings.Repeat("x", 300), "C:\\x\\y.pdf"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for mimeType := range allowedFileTypes {
			safe := SafeFileName(name, mimeType)
			if safe == "" || safe == "." || safe == ".." || strings.ContainsAny(safe, "/\\\"\r\n") || utf8.RuneCountInString(safe) > 100 {
				t.Fatalf("unsafe file name %q from %q", safe, name)
			}
			if !slices.Contains(allowedFileTypes[mimeType].extensions, path.Ext(safe)) {
				t.Fatalf("%s named %q from %q: the extension is not the type's", mimeType, safe, name)
			}
		}
		safe := SafeFileName(name, "application/zip")
		if safe == "" || strings.ContainsAny(safe, "/\\\"\r\n") || utf8.RuneCountInString(safe) > 100 {
			t.Fatalf("unsafe file name %q from %q", safe, name)
		}
	})
}

func FuzzVerifyExport(f *testing.F) {
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte("not a zip"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Any input: an answer, never a panic; garbage is never "intact".
		if len(VerifyExportBytes(data)) == 0 {
			t.Fatal("random bytes verified as an intact package")
		}
	})
}
