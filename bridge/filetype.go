package bridge

import (
	"bytes"
	"encoding/binary"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The guest may send pictures, video, audio and PDFs. The type is taken from
// the bytes, never from the name or the browser's claim, and the claim must
// agree with the bytes.

// allowedFileTypes maps each type a guest may send to its Matrix message
// type and the file name extensions it may carry (the first is used when the
// guest's name has another).
var allowedFileTypes = map[string]struct {
	msgType    string
	extensions []string
}{
	"image/png":       {"m.image", []string{".png"}},
	"image/jpeg":      {"m.image", []string{".jpg", ".jpeg"}},
	"image/gif":       {"m.image", []string{".gif"}},
	"image/webp":      {"m.image", []string{".webp"}},
	"image/heic":      {"m.image", []string{".heic", ".heif"}},
	"video/mp4":       {"m.video", []string{".mp4", ".m4v"}},
	"video/quicktime": {"m.video", []string{".mov"}},
	"video/webm":      {"m.video", []string{".webm"}},
	"audio/mpeg":      {"m.audio", []string{".mp3"}},
	"audio/mp4":       {"m.audio", []string{".m4a"}},
	"audio/ogg":       {"m.audio", []string{".ogg", ".oga", ".opus"}},
	"audio/wave":      {"m.audio", []string{".wav"}},
	"audio/webm":      {"m.audio", []string{".weba", ".webm"}},
	"application/pdf": {"m.file", []string{".pdf"}},
}

// isoBrands are the ISO base media brands (the four bytes after "ftyp") of
// the files phones and cameras make. Anything else with "ftyp" at offset 4 is
// not taken as video: a Windows executable or an HTML page can carry those
// bytes there too.
var isoBrands = map[string]string{
	"isom": "video/mp4", "iso2": "video/mp4", "iso4": "video/mp4", "iso5": "video/mp4", "iso6": "video/mp4",
	"mp41": "video/mp4", "mp42": "video/mp4", "avc1": "video/mp4", "dash": "video/mp4", "M4V ": "video/mp4",
	"MSNV": "video/mp4", "3gp4": "video/mp4", "3gp5": "video/mp4", "3gp6": "video/mp4", "3g2a": "video/mp4",
	"mmp4": "video/mp4", "f4v ": "video/mp4", "XAVC": "video/mp4",
	"qt  ": "video/quicktime",
	"heic": "image/heic", "heix": "image/heic", "heim": "image/heic", "heis": "image/heic", "hevc": "image/heic",
	"hevx": "image/heic", "mif1": "image/heic", "msf1": "image/heic",
	"M4A ": "audio/mp4", "M4B ": "audio/mp4",
}

// DetectFileType returns the real MIME type of a file's first bytes.
func DetectFileType(head []byte) string {
	if len(head) >= 12 && bytes.Equal(head[4:8], []byte("ftyp")) {
		// The file opens with its ftyp box: a plausible size (the brand, the
		// version and whole compatible brands) and a known brand.
		size := binary.BigEndian.Uint32(head[:4])
		if brandType, known := isoBrands[string(head[8:12])]; known && size >= 16 && size <= 1024 && size%4 == 0 {
			return brandType
		}
		return "application/octet-stream"
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
		return t.msgType
	}
	return "m.file"
}

// maxFileNameRunes bounds a file name shown to people.
const maxFileNameRunes = 100

// SafeFileName makes the name a file is shown and saved under: printable,
// short, never a path, and for every type a guest may send, with an
// extension that belongs to the type its bytes were found to be. A PNG named
// "bilde.html" becomes "bilde.png", so that no name can make a police
// machine open a file with another program than its contents call for.
// Names of other types (officers' documents) keep their extension.
func SafeFileName(name, mimeType string) string {
	name = path.Base(strings.ReplaceAll(name, "\\", "/"))
	var sb strings.Builder
	for _, r := range name {
		if unicode.IsPrint(r) && r != '"' && r != '/' && r != '\\' {
			sb.WriteRune(r)
		}
	}
	name = strings.TrimSpace(sb.String())
	if name == "." || name == ".." {
		name = ""
	}
	ext := ""
	if t, ok := allowedFileTypes[mimeType]; ok {
		// The guest's last extension, or the one before it ("a.pdf.exe"), if it
		// is one of the type's; else the type's own.
		ext = t.extensions[0]
		last := path.Ext(name)
		name = strings.TrimSuffix(name, last)
		if own := strings.ToLower(last); slices.Contains(t.extensions, own) {
			ext = own
		} else if own = strings.ToLower(path.Ext(name)); slices.Contains(t.extensions, own) {
			ext, name = own, strings.TrimSuffix(name, path.Ext(name))
		}
	} else if own := path.Ext(name); utf8.RuneCountInString(own) <= 10 {
		ext, name = own, strings.TrimSuffix(name, own)
	}
	name = strings.TrimRight(name, " .")
	for utf8.RuneCountInString(name)+utf8.RuneCountInString(ext) > maxFileNameRunes {
		_, size := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-size]
	}
	if name == "" {
		name = "fil"
	}
	return name + ext
}
