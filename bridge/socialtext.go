package bridge

import (
	"fmt"
	"strings"
)

// What officers (and, for a move, the person) read from the patrol inbox.
const (
	msgSocialPersonName     messageKey = "social_person_name"
	msgSocialTopic          messageKey = "social_topic"
	msgSocialOpened         messageKey = "social_opened"
	msgSocialUnsupported    messageKey = "social_unsupported"
	msgSocialDeleted        messageKey = "social_deleted"
	msgSocialPostback       messageKey = "social_postback"
	msgSocialWindowClosed   messageKey = "social_window_closed"
	msgSocialNoHumanAgent   messageKey = "social_no_human_agent"
	msgSocialNotSent        messageKey = "social_not_sent"
	msgSocialWhyUnavailable messageKey = "social_why_unavailable"
	msgSocialWhyToken       messageKey = "social_why_token"
	msgSocialWhyPermission  messageKey = "social_why_permission"
	msgSocialWhyHumanAgent  messageKey = "social_why_human_agent"
	msgSocialWhyRefused     messageKey = "social_why_refused"
	msgSocialWhyWindow      messageKey = "social_why_window"
	msgSocialWhyClosed      messageKey = "social_why_closed"
	msgSocialCannotSend     messageKey = "social_cannot_send"
	msgSocialClosed         messageKey = "social_closed"
	msgSocialClosedHeld     messageKey = "social_closed_held"
	msgSocialMoveLink       messageKey = "social_move_link"
	msgSocialMoveCode       messageKey = "social_move_code"
	msgSocialMoved          messageKey = "social_moved"
	msgSocialMovedFrom      messageKey = "social_moved_from"
	msgSocialDelivered      messageKey = "social_delivered"
	msgSocialNoEdit         messageKey = "social_no_edit"
	msgSocialNoUnsend       messageKey = "social_no_unsend"

	msgSocialLink                  messageKey = "social_link"
	msgSocialAttachmentNotBrought  messageKey = "social_attachment_not_brought"
	msgSocialWhyTooLarge           messageKey = "social_why_too_large"
	msgSocialWhyFileType           messageKey = "social_why_file_type"
	msgSocialWhyExpired            messageKey = "social_why_expired"
	msgSocialWhyNotMeta            messageKey = "social_why_not_meta"
	msgSocialWhyHomeserver         messageKey = "social_why_homeserver"
	msgSocialNounImage             messageKey = "social_noun_image"
	msgSocialNounVideo             messageKey = "social_noun_video"
	msgSocialNounAudio             messageKey = "social_noun_audio"
	msgSocialNounStory             messageKey = "social_noun_story"
	msgSocialNounFile              messageKey = "social_noun_file"
	msgSocialGivenUp               messageKey = "social_given_up"
	msgSocialLostMessage           messageKey = "social_lost_message"
	msgSocialLostAttachmentMessage messageKey = "social_lost_attachment_message"
	msgSocialLostReaction          messageKey = "social_lost_reaction"
	msgSocialLostEdit              messageKey = "social_lost_edit"
	msgSocialLostWithdrawal        messageKey = "social_lost_withdrawal"
	msgSocialLostEcho              messageKey = "social_lost_echo"
	msgSocialLostPostback          messageKey = "social_lost_postback"
	msgSocialRoomsHeld             messageKey = "social_rooms_held"
	msgSocialRoomsReleased         messageKey = "social_rooms_released"
)

// The inbox's notices about what could not be brought over, and the budget
// of new rooms.
func init() {
	for key, text := range map[messageKey]string{
		msgSocialLink:                  "[Lenke: %s] %s",
		msgSocialAttachmentNotBrought:  "Et vedlegg fra personen kunne ikke hentes inn (%s%s). %s",
		msgSocialWhyTooLarge:           "Det er større enn grensen på %s.",
		msgSocialWhyFileType:           "Filtypen (%s) tas ikke imot, av samme grunn som på den sikre siden.",
		msgSocialWhyExpired:            "Meta leverer det ikke lenger (lenken er utløpt, eller vedlegget er slettet).",
		msgSocialWhyNotMeta:            "Adressen er ikke en av Metas egne servere, så den ble ikke åpnet.",
		msgSocialWhyHomeserver:         "Matrix-serveren tok ikke imot det.",
		msgSocialNounImage:             "bilde",
		msgSocialNounVideo:             "videoklipp",
		msgSocialNounAudio:             "lydklipp",
		msgSocialNounStory:             "Instagram-story",
		msgSocialNounFile:              "fil",
		msgSocialGivenUp:               "%s fra personen på %s kunne ikke hentes inn etter %d forsøk og er gitt opp. Be personen sende den på nytt hvis den var viktig.",
		msgSocialLostMessage:           "En melding",
		msgSocialLostAttachmentMessage: "En melding med vedlegg",
		msgSocialLostReaction:          "En reaksjon",
		msgSocialLostEdit:              "En endring av en melding",
		msgSocialLostWithdrawal:        "En tilbaketrekking av en melding",
		msgSocialLostEcho:              "Et svar sendt fra siden",
		msgSocialLostPostback:          "Et trykk på en knapp",
		msgSocialRoomsHeld:             "Uvanlig mange nye personer skriver til %s nå: grensen på %d nye rom per %s er nådd. Meldingene fra de nye tas vare på, og rommene deres åpnes etter hvert som grensen tillater det. Ingen meldinger går tapt. Metrikken `sikkerchat_meta_held_people` viser hvor mange som venter.",
		msgSocialRoomsReleased:         "Alle nye personer som ventet på rom hos %s, har nå fått rom.",
	} {
		catalog[LangBokmal][key] = text
	}
	for key, text := range map[messageKey]string{
		msgSocialLink:                  "[Link: %s] %s",
		msgSocialAttachmentNotBrought:  "An attachment from the person could not be brought over (%s%s). %s",
		msgSocialWhyTooLarge:           "It is larger than the limit of %s.",
		msgSocialWhyFileType:           "The file type (%s) is not accepted, for the same reason as on the secure page.",
		msgSocialWhyExpired:            "Meta no longer serves it (the link expired, or the attachment was deleted).",
		msgSocialWhyNotMeta:            "The address is not one of Meta's own servers, so it was not opened.",
		msgSocialWhyHomeserver:         "The Matrix server did not accept it.",
		msgSocialNounImage:             "image",
		msgSocialNounVideo:             "video clip",
		msgSocialNounAudio:             "audio clip",
		msgSocialNounStory:             "Instagram story",
		msgSocialNounFile:              "file",
		msgSocialGivenUp:               "%s from the person on %s could not be brought over after %d tries and was given up. Ask the person to send it again if it mattered.",
		msgSocialLostMessage:           "A message",
		msgSocialLostAttachmentMessage: "A message with attachments",
		msgSocialLostReaction:          "A reaction",
		msgSocialLostEdit:              "An edit of a message",
		msgSocialLostWithdrawal:        "A withdrawal of a message",
		msgSocialLostEcho:              "A reply sent from the page",
		msgSocialLostPostback:          "A tap on a button",
		msgSocialRoomsHeld:             "Unusually many new people are writing to %s now: the limit of %d new rooms per %s is reached. The new people's messages are kept, and their rooms open as the limit allows. No message is lost. The metric `sikkerchat_meta_held_people` shows how many wait.",
		msgSocialRoomsReleased:         "Every new person who waited for a room at %s now has one.",
	} {
		catalog[LangEnglish][key] = text
	}
}

// fileSize is a size for officers: "15,7 MB" in bokmål, "15.7 MB" in English.
func (l Language) fileSize(n int64) string {
	var s string
	switch {
	case n >= 1000*1000:
		s = fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1000:
		s = fmt.Sprintf("%.1f kB", float64(n)/1e3)
	default:
		return fmt.Sprintf("%d B", n)
	}
	if l != LangEnglish {
		s = strings.Replace(s, ".", ",", 1)
	}
	return s
}

func init() {
	for key, text := range map[messageKey]string{
		msgSocialPersonName:     "%s-bruker %04d",
		msgSocialTopic:          "Samtale på %s med %s. Det du skriver her, sendes til personen.",
		msgSocialOpened:         "Ny samtale fra %s. Svar her; det du skriver, sendes til personen. Skriv `%s new` for å flytte samtalen til en sikker samtale.",
		msgSocialUnsupported:    "[%s som ikke kan vises her]",
		msgSocialDeleted:        "Personen trakk tilbake denne meldingen i %s. Den er tatt vare på her.",
		msgSocialPostback:       "[Trykket på «%s»]",
		msgSocialWindowClosed:   "Ikke sendt: Meta tillater ikke svar mer enn 7 dager etter personens siste melding (%s). Personen må skrive igjen først.",
		msgSocialNoHumanAgent:   "Ikke sendt: det er mer enn 24 timer siden personens siste melding (%s), og appen har ikke Metas Human Agent-tillatelse. Personen må skrive igjen først.",
		msgSocialNotSent:        "Ikke sendt til personen: %s",
		msgSocialWhyUnavailable: "personen kan ikke nås på %s nå (kan ha blokkert siden eller slettet kontoen).",
		msgSocialWhyToken:       "tilgangsnøkkelen til siden virker ikke lenger. Administratoren må lage en ny (se docs/setup-meta.md).",
		msgSocialWhyPermission:  "appen mangler en tillatelse hos Meta. Administratoren må sjekke appen (se docs/setup-meta.md).",
		msgSocialWhyHumanAgent:  "Meta har ikke godkjent Human Agent-tillatelsen for appen.",
		msgSocialWhyRefused:     "Meta avviste meldingen (for lang, for stor fil eller en type Meta ikke tar imot).",
		msgSocialWhyWindow:      "Meta sier at tidsvinduet for svar er lukket. Personen må skrive igjen først.",
		msgSocialWhyClosed:      "samtalen er avsluttet.",
		msgSocialCannotSend:     "Ikke sendt: denne typen melding kan ikke sendes til %s.",
		msgSocialClosed:         "Samtalen er avsluttet (%s). Nye meldinger fra personen kommer i et nytt rom. Rommet slettes %s med mindre det er satt på vent (`%s hold`).",
		msgSocialClosedHeld:     "Samtalen er avsluttet (%s). Nye meldinger fra personen kommer i et nytt rom. Rommet er satt på vent (rettslig hold) og beholdes til en administrator opphever ventingen med `%s unhold`.",
		msgSocialMoveLink:       "%s vil fortsette samtalen på en sikker side. Trykk på lenken: %s",
		msgSocialMoveCode:       "Kodeordet er: %s",
		msgSocialMoved:          "Lenken og kodeordet er sendt til personen på %s i to meldinger. Den sikre samtalen er %s.",
		msgSocialMovedFrom:      "Denne sikre samtalen ble startet fra en samtale på %s (%s).",
		msgSocialDelivered:      "Sendt til personen.",
		msgSocialNoEdit:         "Endringen er ikke sendt: meldinger kan ikke endres etter at de er sendt til %s. Personen ser den første versjonen.",
		msgSocialNoUnsend:       "Meldingen er slettet her, men ikke hos personen: meldinger kan ikke trekkes tilbake etter at de er sendt til %s.",
	} {
		catalog[LangBokmal][key] = text
	}
	for key, text := range map[messageKey]string{
		msgSocialPersonName:     "%s user %04d",
		msgSocialTopic:          "Conversation on %s with %s. What you write here is sent to the person.",
		msgSocialOpened:         "New conversation from %s. Reply here; what you write is sent to the person. Type `%s new` to move the conversation to a secure conversation.",
		msgSocialUnsupported:    "[%s that cannot be shown here]",
		msgSocialDeleted:        "The person withdrew this message on %s. It is kept here.",
		msgSocialPostback:       "[Tapped «%s»]",
		msgSocialWindowClosed:   "Not sent: Meta allows no replies more than 7 days after the person's last message (%s). The person must write again first.",
		msgSocialNoHumanAgent:   "Not sent: more than 24 hours have passed since the person's last message (%s), and the app has no Human Agent permission from Meta. The person must write again first.",
		msgSocialNotSent:        "Not sent to the person: %s",
		msgSocialWhyUnavailable: "the person cannot be reached on %s now (may have blocked the page or deleted the account).",
		msgSocialWhyToken:       "the page's access token no longer works. The administrator must make a new one (see docs/setup-meta.md).",
		msgSocialWhyPermission:  "the app lacks a permission at Meta. The administrator must check the app (see docs/setup-meta.md).",
		msgSocialWhyHumanAgent:  "Meta has not approved the Human Agent permission for the app.",
		msgSocialWhyRefused:     "Meta refused the message (too long, too large a file or a type Meta does not take).",
		msgSocialWhyWindow:      "Meta says the reply window is closed. The person must write again first.",
		msgSocialWhyClosed:      "the conversation is closed.",
		msgSocialCannotSend:     "Not sent: this kind of message cannot be sent to %s.",
		msgSocialClosed:         "The conversation is closed (%s). New messages from the person come in a new room. The room is purged %s unless it is on hold (`%s hold`).",
		msgSocialClosedHeld:     "The conversation is closed (%s). New messages from the person come in a new room. The room is on legal hold and is kept until an administrator lifts the hold with `%s unhold`.",
		msgSocialMoveLink:       "%s would like to continue the conversation on a secure page. Tap the link: %s",
		msgSocialMoveCode:       "The code word is: %s",
		msgSocialMoved:          "The link and the code word were sent to the person on %s in two messages. The secure conversation is %s.",
		msgSocialMovedFrom:      "This secure conversation was started from a conversation on %s (%s).",
		msgSocialDelivered:      "Sent to the person.",
		msgSocialNoEdit:         "The change was not sent: messages cannot be changed once sent to %s. The person sees the first version.",
		msgSocialNoUnsend:       "The message is deleted here, but not for the person: messages cannot be taken back once sent to %s.",
	} {
		catalog[LangEnglish][key] = text
	}
}
