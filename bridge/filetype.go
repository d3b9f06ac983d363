package bridge

import (
	"bytes"
	"mime"
	"net/http"
	"strings"
)

// The guest may send pictures, video, audio and PDFs. The type is taken from
// the bytes, never from the name or the browser's claim, and the claim must
// agree with the bytes.

var allowedFileTypes = map[string]string{
	"image/png":       "m.image",
	"image/jpeg":      "m.image",
	"image/gif":       "m.image",
	"image/webp":      "m.image",
	"image/heic":      "m.image",
	"video/mp4":       "m.video",
	"video/quicktime": "m.video",
	"video/webm":      "m.video",
	"audio/mpeg":      "m.audio",
	"audio/mp4":       "m.audio",
	"audio/ogg":       "m.audio",
	"audio/wave":      "m.audio",
	"audio/webm":      "m.audio",
	"application/pdf": "m.file",
}

// DetectFileType returns the real MIME type of a file's first bytes.
func DetectFileType(head []byte) string {
	// ISO base media (mp4, mov, heic, m4a) is told apart by its brand.
	if len(head) >= 12 && bytes.Equal(head[4:8], []byte("ftyp")) {
		switch brand := string(head[8:12]); {
		case brand == "qt  ":
			return "video/quicktime"
		case brand == "heic" || brand == "heix" || brand == "mif1" || brand == "msf1":
			return "image/heic"
		case brand == "M4A " || brand == "M4B ":
			return "audio/mp4"
		default:
			return "video/mp4"
		}
	}
	detected := http.DetectContentType(head)
	if mt, _, err := mime.ParseMediaType(detected); err == nil {
		detected = mt
	}
	switch detected {
	case "audio/wav", "audio/x-wav":
		return "audio/wave"
	case "application/ogg":
		return "audio/ogg"
	}
	return detected
}

// FileTypeAllowed tells whether a detected type may be sent.
func FileTypeAllowed(mimeType string) bool {
	_, ok := allowedFileTypes[mimeType]
	return ok
}

// ClaimMatches tells whether what the browser claimed agrees with the bytes:
// the same type, or the same family (browsers say audio/x-m4a, video/mpeg…).
// An empty or generic claim is fine: there is nothing to disagree with.
func ClaimMatches(claimed, detected string) bool {
	claimed, _, _ = mime.ParseMediaType(claimed)
	claimed = strings.ToLower(claimed)
	if claimed == "" || claimed == "application/octet-stream" || claimed == detected {
		return true
	}
	family := func(t string) string { return t[:max(strings.IndexByte(t, '/'), 0)] }
	if family(claimed) == "application" || family(detected) == "application" {
		return false
	}
	return family(claimed) == family(detected)
}

func matrixMsgType(mimeType string) string {
	if t, ok := allowedFileTypes[mimeType]; ok {
		return t
	}
	return "m.file"
}
