package meta

import "time"

// The messaging windows, counted from the person's last message.
const (
	// StandardWindow: replies go as RESPONSE.
	StandardWindow = 24 * time.Hour
	// HumanAgentWindow: with the Human Agent feature, a person's replies go as
	// MESSAGE_TAG with tag HUMAN_AGENT.
	HumanAgentWindow = 7 * 24 * time.Hour
)

// WindowState is where a conversation stands.
type WindowState string

const (
	WindowOpen       WindowState = "open"
	WindowHumanAgent WindowState = "human_agent"
	WindowClosed     WindowState = "closed"
)

// Window says how a reply may be sent now, given the person's last message.
// ok is false when no reply may be sent at all.
func Window(lastInbound, now time.Time, humanAgent bool) (state WindowState, messagingType, tag string, until time.Time, ok bool) {
	if lastInbound.IsZero() {
		return WindowClosed, "", "", time.Time{}, false
	}
	if now.Before(lastInbound.Add(StandardWindow)) {
		return WindowOpen, TypeResponse, "", lastInbound.Add(StandardWindow), true
	}
	if humanAgent && now.Before(lastInbound.Add(HumanAgentWindow)) {
		return WindowHumanAgent, TypeMessageTag, TagHumanAgent, lastInbound.Add(HumanAgentWindow), true
	}
	return WindowClosed, "", "", time.Time{}, false
}
