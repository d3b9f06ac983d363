package bridge

import (
	"context"

	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/event"
)

// What the bridge tells bridgev2 and Matrix clients that conversations can
// carry.

func (oc *OfficerClient) GetCapabilities(ctx context.Context, portal *bridgev2.Portal) *event.RoomFeatures {
	return roomFeatures
}

var anyFile = &event.FileFeatures{
	MimeTypes: map[string]event.CapabilitySupportLevel{"*/*": event.CapLevelFullySupported},
	Caption:   event.CapLevelFullySupported,
	MaxSize:   100 << 20,
}

// roomFeatures: officers write plain text (formatting is shown as text), send
// any file, reply, edit and delete; the guest page shows all of it.
var roomFeatures = &event.RoomFeatures{
	ID: "no.sikkerchat.capabilities.2026_11_23.2",
	Formatting: event.FormattingFeatureMap{
		event.FmtBold:   event.CapLevelPartialSupport,
		event.FmtItalic: event.CapLevelPartialSupport,
	},
	File: event.FileFeatureMap{
		event.MsgImage: anyFile,
		event.MsgVideo: anyFile,
		event.MsgAudio: anyFile,
		event.MsgFile:  anyFile,
	},
	MaxTextLength: maxOfficerText,
	Reply:         event.CapLevelFullySupported,
	Edit:          event.CapLevelFullySupported,
	Delete:        event.CapLevelFullySupported,
}

// maxOfficerText keeps a single message readable on a phone.
const maxOfficerText = 20000

func (sc *Connector) GetCapabilities() *bridgev2.NetworkGeneralCapabilities {
	return &bridgev2.NetworkGeneralCapabilities{}
}
