package bridge

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestDetectFileType(t *testing.T) {
	cases := map[string]string{
		"\x89PNG\r\n\x1a\n\x00\x00":                     "image/png",
		"\xff\xd8\xff\xe0\x00\x10JFIF":                  "image/jpeg",
		"GIF89a":                                        "image/gif",
		"RIFF\x00\x00\x00\x00WEBPVP8 ":                  "image/webp",
		"%PDF-1.7\n":                                    "application/pdf",
		"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00":      "video/mp4",
		"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00":      "video/quicktime",
		"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00":      "image/heic",
		"\x00\x00\x00\x18ftypM4A \x00\x00\x00\x00":      "audio/mp4",
		"ID3\x03\x00\x00\x00":                           "audio/mpeg",
		"OggS\x00\x02":                                  "audio/ogg",
		"RIFF\x00\x00\x00\x00WAVEfmt ":                  "audio/wave",
		"\x1aE\xdf\xa3\x01\x00\x00\x00\x00\x00\x00\x1f": "video/webm",
	}
	for head, want := range cases {
		got := DetectFileType([]byte(head))
		require.Equal(t, want, got, "%q", head)
		require.True(t, FileTypeAllowed(got), got)
	}
	for _, refused := range []string{"<html>", "MZ\x90\x00", "#!/bin/sh\n", "PK\x03\x04", "hei",
		// Polyglots: "ftyp" at offset 4 of an executable or a page is no video.
		"MZ\x90\x00ftypisom\x00\x00\x02\x00",
		"<htmftypmp42<script>alert(1)</script>",
		"\x00\x00\x00\x18ftypevil\x00\x00\x00\x00", // unknown brand
		"\x00\x00\x00\x08ftypisom\x00\x00\x00\x00", // a box too small to hold its brand
		"\x7f\xff\xff\xf0ftypmp42\x00\x00\x00\x00", // a box of 2 GiB
	} {
		require.False(t, FileTypeAllowed(DetectFileType([]byte(refused))), "%q", refused)
	}
}

func TestClaimMatches(t *testing.T) {
	require.True(t, ClaimMatches("image/png", "image/png"))
	require.True(t, ClaimMatches("", "image/png"))
	require.True(t, ClaimMatches("application/octet-stream", "video/mp4"))
	require.True(t, ClaimMatches("audio/x-m4a", "audio/mp4"))
	require.True(t, ClaimMatches("image/jpeg; charset=binary", "image/jpeg"))
	require.False(t, ClaimMatches("image/png", "application/pdf"))
	require.False(t, ClaimMatches("application/pdf", "image/png"))
	require.False(t, ClaimMatches("video/mp4", "image/png"))
}

func TestSafeFileName(t *testing.T) {
	require.Equal(t, "passwd.png", SafeFileName("../../etc/passwd", "image/png"))
	// The extension comes from the bytes for every type a guest may send.
	require.Equal(t, "bilde.png", SafeFileName("bilde.html", "image/png"))
	require.Equal(t, "rapport.pdf", SafeFileName("rapport.pdf.exe", "application/pdf"))
	require.Equal(t, "video.mp4", SafeFileName("video.png", "video/mp4"))
	require.Equal(t, "foto.jpeg", SafeFileName("foto.JPEG", "image/jpeg"))
	require.Equal(t, "foto.jpg", SafeFileName("foto", "image/jpeg"))
	require.Equal(t, "fil.png", SafeFileName(".png", "image/png"))
	require.Equal(t, "lyd.m4a", SafeFileName("lyd. . .", "audio/mp4"))
	// Officers' documents of other types keep their name.
	require.Equal(t, "avhør.docx", SafeFileName("avhør.docx", "application/zip"))
	long := SafeFileName(strings.Repeat("å", 300)+".html", "image/png")
	require.Equal(t, 100, utf8.RuneCountInString(long))
	require.True(t, strings.HasSuffix(long, ".png"), long)
	require.Equal(t, "a.png", SafeFileName(`C:\Users\x\a.png`, "image/png"))
	require.Equal(t, "fil.png", SafeFileName("", "image/png"))
	require.Equal(t, "fil.pdf", SafeFileName("..", "application/pdf"))
	require.Equal(t, "ab.png", SafeFileName("a\"b\r\n.png", "image/png")[:2]+".png")
	require.LessOrEqual(t, len([]rune(SafeFileName(string(make([]rune, 300)), ""))), 100)
}
