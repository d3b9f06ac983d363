package bridge

// What officers (and, for a move, the person) read from the patrol inbox.
const (
	msgSocialPersonName     messageKey = "social_person_name"
	msgSocialTopic          messageKey = "social_topic"
	msgSocialOpened         messageKey = "social_opened"
	msgSocialUnsupported    messageKey = "social_unsupported"
	msgSocialAttachmentLost messageKey = "social_attachment_lost"
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
)

func init() {
	for key, text := range map[messageKey]string{
		msgSocialPersonName:     "%s-bruker %04d",
		msgSocialTopic:          "Samtale på %s med %s. Det du skriver her, sendes til personen.",
		msgSocialOpened:         "Ny samtale fra %s. Svar her; det du skriver, sendes til personen. Skriv `%s new` for å flytte samtalen til en sikker samtale.",
		msgSocialUnsupported:    "[%s som ikke kan vises her]",
		msgSocialAttachmentLost: "[Et vedlegg kunne ikke hentes fra Meta]",
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
		msgSocialAttachmentLost: "[An attachment could not be fetched from Meta]",
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
