package bridge

import (
	"fmt"
	"strings"
	"time"
)

// Language is a language officers can read the bridge's replies in.
// Norwegian bokmål is the default; the citizen's languages live in the web package.
type Language string

const (
	LangBokmal  Language = "nb"
	LangEnglish Language = "en"
)

func parseLanguage(s string) (Language, error) {
	switch Language(strings.ToLower(strings.TrimSpace(s))) {
	case "", LangBokmal, "no", "nb-no":
		return LangBokmal, nil
	case LangEnglish, "en-gb", "en-us":
		return LangEnglish, nil
	}
	return "", fmt.Errorf("unsupported language %q (use nb or en)", s)
}

type messageKey string

const (
	msgNotOfficer          messageKey = "not_officer"
	msgEncryptionOff       messageKey = "encryption_off"
	msgCreateFailed        messageKey = "create_failed"
	msgCreated             messageKey = "created"
	msgCreatedInRoom       messageKey = "created_in_room"
	msgLabelTooLong        messageKey = "label_too_long"
	msgHelp                messageKey = "help"
	msgStatusConversation  messageKey = "status_conversation"
	msgStatusOverview      messageKey = "status_overview"
	msgStatusFailed        messageKey = "status_failed"
	msgUnknownCommand      messageKey = "unknown_command"
	msgStatusCreated       messageKey = "status_created"
	msgStatusActive        messageKey = "status_active"
	msgStatusClosed        messageKey = "status_closed"
	msgStatusExpired       messageKey = "status_expired"
	msgNotInConversation   messageKey = "not_in_conversation"
	msgNoPermissionForRoom messageKey = "no_permission_for_room"
	msgRoomTopic           messageKey = "room_topic"
	msgInviteBurned        messageKey = "invite_burned"
	msgGuestJoined         messageKey = "guest_joined"
	msgReissued            messageKey = "reissued"
	msgReissueClosed       messageKey = "reissue_closed"
	msgUndeliverable       messageKey = "undeliverable"
	msgClosed              messageKey = "closed"
	msgCloseByOfficer      messageKey = "close_by_officer"
	msgCloseExpired        messageKey = "close_expired"
	msgCloseIdle           messageKey = "close_idle"
	msgCloseProvisioning   messageKey = "close_provisioning"
	msgAlreadyClosed       messageKey = "already_closed"
	msgHoldOn              messageKey = "hold_on"
	msgHoldOff             messageKey = "hold_off"
	msgAuditHeader         messageKey = "audit_header"
	msgAuditOK             messageKey = "audit_ok"
	msgAuditBroken         messageKey = "audit_broken"
	msgListEmpty           messageKey = "list_empty"
	msgListHeader          messageKey = "list_header"
	msgAddUsage            messageKey = "add_usage"
	msgAddNotOfficer       messageKey = "add_not_officer"
	msgAdded               messageKey = "added"
	msgExported            messageKey = "exported"
	msgStats               messageKey = "stats"
	msgStatsUsage          messageKey = "stats_usage"
	msgMemberRemoved       messageKey = "member_removed"
	msgMemberRemovedReason messageKey = "member_removed_reason"
	msgMemberNotRemoved    messageKey = "member_not_removed"
	msgEditNotOwn          messageKey = "edit_not_own"
	msgCloseUndelivered    messageKey = "close_undelivered"
	msgCommandFailed       messageKey = "command_failed"
	msgUnholdAdminOnly     messageKey = "unhold_admin_only"
	msgUnholdUsage         messageKey = "unhold_usage"
	msgClosedHeld          messageKey = "closed_held"
	msgPlainMessage        messageKey = "plain_message"
	msgWelcome             messageKey = "welcome"
	msgWelcomeManagement   messageKey = "welcome_management"
	msgListItem            messageKey = "list_item"
	msgListNoLabel         messageKey = "list_no_label"
	msgListHeld            messageKey = "list_held"
	msgAgeJustNow          messageKey = "age_just_now"
	msgAgeMinutes          messageKey = "age_minutes"
	msgAgeHours            messageKey = "age_hours"
	msgAgeDays             messageKey = "age_days"
	// An officer's changed cross-signing identity (identity.go).
	msgIdentityLockedOut      messageKey = "identity_locked_out"
	msgIdentityChangedAdmin   messageKey = "identity_changed_admin"
	msgIdentityTrustedOfficer messageKey = "identity_trusted_officer"
	msgTrustAdminOnly         messageKey = "trust_admin_only"
	msgTrustUsage             messageKey = "trust_usage"
	msgTrustSelf              messageKey = "trust_self"
	msgTrustNotOfficer        messageKey = "trust_not_officer"
	msgTrustNothing           messageKey = "trust_nothing"
	msgTrustPending           messageKey = "trust_pending"
	msgTrustChangedAgain      messageKey = "trust_changed_again"
	msgTrusted                messageKey = "trusted"
)

var catalog = map[Language]map[messageKey]string{
	LangBokmal: {
		msgNotOfficer: "Beklager, du har ikke tilgang til sikkerchat. " +
			"Ta kontakt med den som administrerer tjenesten hvis du mener du skal ha tilgang.",
		msgEncryptionOff: "Kan ikke opprette samtalen: kryptering er slått av i konfigurasjonen til sikkerchat. " +
			"Be administratoren slå på `encryption.allow`, `encryption.default` og `encryption.require`.",
		msgCreateFailed:  "Kunne ikke opprette samtalen. Prøv igjen om litt. Feilen er logget (sporings-ID %s).",
		msgCommandFailed: "Det gikk ikke. Prøv igjen om litt. Feilen er logget (sporings-ID %s).",
		msgCreated: "**Ny sikker samtale opprettet** (%s)\n\n" +
			"Send denne lenken til personen:\n\n%s\n\n" +
			"Kodeord (send det i en egen melding): **%s**\n\n" +
			"Lenken virker én gang og går ut %s. Du er invitert til samtalerommet.",
		msgCreatedInRoom: "Samtalen er opprettet av %s. Venter på at gjesten åpner lenken (gyldig til %s).",
		msgLabelTooLong:  "Merkelappen kan være høyst %d tegn.",
		msgHelp: "**sikkerchat – kommandoer**\n\n" +
			"* `%[1]s new [merkelapp]` – opprett en ny sikker samtale og få lenke og kodeord\n" +
			"* `%[1]s status` – vis status for samtalen i dette rommet, eller en oversikt\n" +
			"* `%[1]s reissue` – (i et samtalerom) lag ny lenke og nytt kodeord; de gamle slutter å virke\n" +
			"* `%[1]s close` – (i et samtalerom) avslutt samtalen; gjesten mister tilgangen med en gang\n" +
			"* `%[1]s export` – (i et samtalerom) lag en bevispakke av hele samtalen\n" +
			"* `%[1]s add @kollega` · `%[1]s list` · `%[1]s hold` · `%[1]s unhold` · `%[1]s audit`\n" +
			"* `%[1]s help` – vis denne hjelpen\n" +
			"* `%[1]s trust @betjent NØKKEL` – (administrator) godkjenn en betjents nye krypteringsidentitet etter å ha sjekket med betjenten",
		msgStatusConversation:  "**Samtale %s**\n\n* Status: %s\n* Opprettet: %s av %s\n* Gjest: %s\n* Lenken går ut: %s",
		msgStatusOverview:      "sikkerchat kjører. Du har %d åpne samtaler. Skriv `%s help` for kommandoer.",
		msgStatusFailed:        "Kunne ikke hente status. Feilen er logget (sporings-ID %s).",
		msgUnknownCommand:      "Ukjent kommando. Skriv `%s help` for en liste.",
		msgStatusCreated:       "venter på gjesten",
		msgStatusActive:        "aktiv",
		msgStatusClosed:        "avsluttet",
		msgStatusExpired:       "utløpt",
		msgNotInConversation:   "Denne kommandoen virker bare i et samtalerom.",
		msgNoPermissionForRoom: "Du er ikke med i denne samtalen.",
		msgRoomTopic:           "Sikker samtale med en innbygger (%s). Alt som skrives her, vises for gjesten.",
		msgInviteBurned: "Gjesten skrev feil kodeord %d ganger, så lenken er sperret. " +
			"Send `%s reissue` i dette rommet for å lage en ny lenke og et nytt kodeord.",
		msgGuestJoined: "Gjesten har åpnet samtalen.",
		msgReissued: "**Ny lenke til %s**\n\nDen gamle lenken og alle åpne økter virker ikke lenger.\n\n%s\n\n" +
			"Kodeord (send det i en egen melding): **%s**\n\nLenken virker én gang og går ut %s.",
		msgReissueClosed: "Samtalen er avsluttet, så det kan ikke lages en ny lenke.",
		msgClosed: "**Samtalen er avsluttet** (%s). Gjesten har ikke lenger tilgang, og det som lå hos sikkerchat på gjestens side er slettet. " +
			"Politiet beholder dette rommet til %s; da slettes det, med mindre noen setter det på vent med `%s hold`.",
		msgCloseByOfficer:    "avsluttet av %s",
		msgCloseExpired:      "lenken ble ikke brukt før den gikk ut",
		msgCloseIdle:         "ingen aktivitet på lenge",
		msgCloseProvisioning: "avsluttet fra fagsystemet",
		msgAlreadyClosed:     "Samtalen er allerede avsluttet.",
		msgHoldOn:            "Rommet er satt på vent (rettslig hold). Det slettes ikke før noen skriver `unhold`.",
		msgHoldOff:           "Ventingen er opphevet. Et avsluttet rom slettes når oppbevaringstiden er ute (%s).",
		msgAuditHeader:       "**Revisjonslogg for samtale %s**\n",
		msgAuditOK:           "Kjeden er hel: ingen rader er endret eller fjernet.",
		msgAuditBroken:       "Kjeden er brutt: %s",
		msgListEmpty:         "Du har ingen åpne samtaler.",
		msgListHeader:        "**Dine åpne samtaler**, nyeste først\n",
		msgAddUsage:          "Bruk: `%s add @kollega:domene`",
		msgAddNotOfficer:     "%s har ikke tilgang til sikkerchat og kan ikke legges til.",
		msgAdded:             "%s er invitert til samtalen.",
		msgStats: "**Statistikk, siste %d dager** (anonym)\n\n* Opprettet: %d · åpnet av gjesten: %d · avsluttet: %d · utløpt: %d\n" +
			"* Median tid til åpnet: %s · til avsluttet: %s\n* Meldinger fra gjester: %d · til gjester: %d\n* Filer fra gjester: %d · til gjester: %d",
		msgStatsUsage: "Bruk: `%s stats [dager]` (1–3660)",
		msgExported:   "Bevispakken %s er lagt i rommet (kryptert). Kontroller den med `sikkerchat verify-export FIL.zip` (se docs/evidence.md).",
		msgUndeliverable: "⚠️ En melding eller fil fra gjesten kunne ikke leveres hit (for eksempel fordi filen er for stor for hjemmeserveren). " +
			"Gjesten ser at den ikke kom fram.",
		msgMemberRemoved: "⚠️ %s er ikke en godkjent betjent i sikkerchat og er fjernet fra rommet. " +
			"Bare godkjente betjenter kan være med i en samtale; gjestens meldinger krypteres for alle som er med.",
		msgMemberRemovedReason: "Ikke en godkjent betjent i sikkerchat",
		msgMemberNotRemoved: "⚠️ %s er ikke en godkjent betjent i sikkerchat, men kunne ikke fjernes fra rommet. " +
			"Ikke skriv noe i samtalen før administratoren har fjernet personen.",
		msgEditNotOwn: "Du kan bare endre dine egne meldinger. Endringen er ikke vist for gjesten.",
		msgCloseUndelivered: "Samtalen er **ikke** avsluttet: %d meldinger fra gjesten har ikke kommet fram til rommet ennå " +
			"(hjemmeserveren svarer ikke). Avslutning nå ville slettet dem. Prøv igjen om litt.",
		msgUnholdAdminOnly: "Bare en administrator kan oppheve ventingen (rettslig hold).",
		msgUnholdUsage:     "Skriv hvorfor ventingen oppheves: `%s unhold <begrunnelse>`. Begrunnelsen føres i revisjonsloggen.",
		msgClosedHeld: "**Samtalen er avsluttet** (%s). Gjesten har ikke lenger tilgang, og det som lå hos sikkerchat på gjestens side er slettet. " +
			"Rommet er satt på vent (rettslig hold): politiet beholder det til en administrator opphever ventingen med `%s unhold`.",
		msgPlainMessage: "Jeg svarer bare på kommandoer. De begynner med `%[1]s`: skriv `%[1]s new [merkelapp]` for å starte en sikker samtale, " +
			"eller `%[1]s help` for alle kommandoene.",
		msgWelcome: "**Velkommen til sikkerchat**\n\n" +
			"Med sikkerchat flytter du en samtale fra sosiale medier over i en sikker, kryptert samtale. " +
			"Personen får en lenke og et kodeord, åpner lenken i nettleseren på telefonen og kan skrive med deg med en gang, uten konto eller app. " +
			"Når samtalen er avsluttet, er det bare politiet som har den.\n\n" +
			"* `%[1]s new [merkelapp]` – start en sikker samtale og få lenke og kodeord\n" +
			"* `%[1]s help` – se alle kommandoene",
		msgWelcomeManagement: "Dette er din direktechat med sikkerchat: her virker kommandoene også uten `%[1]s`.",
		msgListItem:          "* %s – %s, opprettet %s · %s",
		msgListNoLabel:       "_uten merkelapp_",
		msgListHeld:          "%s (rettslig hold)",
		msgAgeJustNow:        "nå nettopp",
		msgAgeMinutes:        "for %d min siden",
		msgAgeHours:          "for %d t siden",
		msgAgeDays:           "for %d d siden",
		msgIdentityLockedOut: "⚠️ **Krypteringsidentiteten din er endret**, så sikkerchat stoler ikke på enhetene dine før en administrator har godkjent den nye. " +
			"Det du skrev, er ikke sendt videre, og du får ikke se noe fra samtalene så lenge.\n\n" +
			"Administratorene er varslet. De tar kontakt med deg utenom Matrix (på telefon eller ansikt til ansikt) for å sjekke at det var du " +
			"som tilbakestilte identiteten i Element. Du kan også ta kontakt med dem selv.",
		msgIdentityChangedAdmin: "⚠️ **Krypteringsidentiteten til %[1]s er endret.** Til en administrator har godkjent den nye, " +
			"får betjenten ingenting fra sikkerchat og kan ikke bruke kommandoer.\n\n" +
			"Det skjer når noen tilbakestiller identiteten sin i Element (for eksempel etter å ha mistet gjenopprettingsnøkkelen), " +
			"men også når noen andre har fått tilgang til kontoen. Kontakt betjenten utenom Matrix (på telefon eller ansikt til ansikt) " +
			"og spør om de selv tilbakestilte identiteten nå nettopp. Bare hvis svaret er ja, skriv:\n\n`%[3]s trust %[1]s %[2]s`",
		msgIdentityTrustedOfficer: "✅ Den nye krypteringsidentiteten din er godkjent av %s, og du kan bruke sikkerchat igjen. " +
			"Det du skrev mens du var sperret, er ikke sendt videre: send det på nytt. " +
			"En enhet du ikke har bekreftet med den nye identiteten, får fortsatt ingenting: bekreft den i Element.",
		msgTrustAdminOnly:  "Bare en administrator kan godkjenne en ny krypteringsidentitet.",
		msgTrustUsage:      "Bruk: `%s trust @betjent:domene NØKKEL`. Nøkkelen står i varselet om den endrede identiteten.",
		msgTrustSelf:       "Du kan ikke godkjenne din egen identitet. Be en annen administrator om det.",
		msgTrustNotOfficer: "%s har ikke tilgang til sikkerchat.",
		msgTrustNothing:    "%s har ingen ny krypteringsidentitet som venter på godkjenning.",
		msgTrustPending: "Krypteringsidentiteten til %[1]s er endret og venter på godkjenning. " +
			"Når du har sjekket med betjenten utenom Matrix at det var dem selv, skriv:\n\n`%[3]s trust %[1]s %[2]s`",
		msgTrustChangedAgain: "Nøkkelen stemmer ikke med identiteten %s har nå: den kan ha blitt endret igjen. " +
			"Se det nyeste varselet, og sjekk med betjenten på nytt.",
		msgTrusted: "✅ Den nye krypteringsidentiteten til %s er godkjent og ført i revisjonsloggen. Betjenten kan bruke sikkerchat igjen. " +
			"Endres identiteten på nytt, blir betjenten sperret igjen til en administrator har godkjent den.",
	},
	LangEnglish: {
		msgNotOfficer: "Sorry, you don't have access to sikkerchat. " +
			"Contact whoever runs the service if you think you should.",
		msgEncryptionOff: "Can't create the conversation: encryption is turned off in the sikkerchat config. " +
			"Ask the administrator to enable `encryption.allow`, `encryption.default` and `encryption.require`.",
		msgCreateFailed:  "Couldn't create the conversation. Try again in a moment. The error was logged (trace ID %s).",
		msgCommandFailed: "That didn't work. Try again in a moment. The error was logged (trace ID %s).",
		msgCreated: "**New secure conversation created** (%s)\n\n" +
			"Send this link to the person:\n\n%s\n\n" +
			"Code word (send it in a separate message): **%s**\n\n" +
			"The link works once and expires %s. You have been invited to the conversation room.",
		msgCreatedInRoom: "Conversation created by %s. Waiting for the guest to open the link (valid until %s).",
		msgLabelTooLong:  "The label can be at most %d characters.",
		msgHelp: "**sikkerchat – commands**\n\n" +
			"* `%[1]s new [label]` – create a new secure conversation and get a link and code word\n" +
			"* `%[1]s status` – show the status of the conversation in this room, or an overview\n" +
			"* `%[1]s reissue` – (in a conversation room) make a new link and code word; the old ones stop working\n" +
			"* `%[1]s close` – (in a conversation room) end the conversation; the guest loses access at once\n" +
			"* `%[1]s export` – (in a conversation room) make an evidence package of the whole conversation\n" +
			"* `%[1]s add @colleague` · `%[1]s list` · `%[1]s hold` · `%[1]s unhold` · `%[1]s audit`\n" +
			"* `%[1]s help` – show this help\n" +
			"* `%[1]s trust @officer KEY` – (administrator) trust an officer's new encryption identity after checking with them",
		msgStatusConversation:  "**Conversation %s**\n\n* Status: %s\n* Created: %s by %s\n* Guest: %s\n* Link expires: %s",
		msgStatusOverview:      "sikkerchat is running. You have %d open conversations. Type `%s help` for commands.",
		msgStatusFailed:        "Couldn't get the status. The error was logged (trace ID %s).",
		msgUnknownCommand:      "Unknown command. Type `%s help` for a list.",
		msgStatusCreated:       "waiting for the guest",
		msgStatusActive:        "active",
		msgStatusClosed:        "closed",
		msgStatusExpired:       "expired",
		msgNotInConversation:   "This command only works in a conversation room.",
		msgNoPermissionForRoom: "You are not part of this conversation.",
		msgRoomTopic:           "Secure conversation with a citizen (%s). Everything written here is shown to the guest.",
		msgInviteBurned: "The guest typed a wrong code word %d times, so the link is blocked. " +
			"Send `%s reissue` in this room to make a new link and code word.",
		msgGuestJoined: "The guest has opened the conversation.",
		msgReissued: "**New link for %s**\n\nThe old link and any open sessions no longer work.\n\n%s\n\n" +
			"Code word (send it in a separate message): **%s**\n\nThe link works once and expires %s.",
		msgReissueClosed: "The conversation is closed, so no new link can be made.",
		msgClosed: "**The conversation has ended** (%s). The guest no longer has access, and what sikkerchat held on the guest's side is deleted. " +
			"The police keep this room until %s; then it is purged, unless someone puts it on hold with `%s hold`.",
		msgCloseByOfficer:    "closed by %s",
		msgCloseExpired:      "the link was not used before it expired",
		msgCloseIdle:         "no activity for a long time",
		msgCloseProvisioning: "closed from the case system",
		msgAlreadyClosed:     "The conversation is already closed.",
		msgHoldOn:            "The room is on legal hold. It will not be purged until someone sends `unhold`.",
		msgHoldOff:           "The hold is lifted. A closed room is purged when retention ends (%s).",
		msgAuditHeader:       "**Audit trail of conversation %s**\n",
		msgAuditOK:           "The chain is whole: no row was changed or removed.",
		msgAuditBroken:       "The chain is broken: %s",
		msgListEmpty:         "You have no open conversations.",
		msgListHeader:        "**Your open conversations**, newest first\n",
		msgAddUsage:          "Usage: `%s add @colleague:domain`",
		msgAddNotOfficer:     "%s has no access to sikkerchat and cannot be added.",
		msgAdded:             "%s has been invited to the conversation.",
		msgStats: "**Statistics, last %d days** (anonymous)\n\n* Created: %d · opened by the guest: %d · closed: %d · expired: %d\n" +
			"* Median time to open: %s · to close: %s\n* Messages from guests: %d · to guests: %d\n* Files from guests: %d · to guests: %d",
		msgStatsUsage: "Usage: `%s stats [days]` (1–3660)",
		msgExported:   "The evidence package %s is in the room (encrypted). Check it with `sikkerchat verify-export FILE.zip`.",
		msgUndeliverable: "⚠️ A message or file from the guest could not be delivered here (for example a file too large for the homeserver). " +
			"The guest sees that it did not arrive.",
		msgMemberRemoved: "⚠️ %s is not a permitted sikkerchat officer and was removed from the room. " +
			"Only permitted officers can be in a conversation; the guest's messages are encrypted for everyone in it.",
		msgMemberRemovedReason: "Not a permitted sikkerchat officer",
		msgMemberNotRemoved: "⚠️ %s is not a permitted sikkerchat officer but could not be removed from the room. " +
			"Write nothing in the conversation until the administrator has removed them.",
		msgEditNotOwn: "You can only edit your own messages. The edit is not shown to the guest.",
		msgCloseUndelivered: "The conversation is **not** closed: %d messages from the guest have not reached the room yet " +
			"(the homeserver does not answer). Closing now would delete them. Try again in a moment.",
		msgUnholdAdminOnly: "Only an administrator can lift a legal hold.",
		msgUnholdUsage:     "Say why the hold is lifted: `%s unhold <reason>`. The reason goes into the audit trail.",
		msgClosedHeld: "**The conversation has ended** (%s). The guest no longer has access, and what sikkerchat held on the guest's side is deleted. " +
			"The room is on legal hold: the police keep it until an administrator lifts the hold with `%s unhold`.",
		msgPlainMessage: "I only answer commands. They start with `%[1]s`: type `%[1]s new [label]` to start a secure conversation, " +
			"or `%[1]s help` for all commands.",
		msgWelcome: "**Welcome to sikkerchat**\n\n" +
			"With sikkerchat you move a conversation from social media into a secure, encrypted conversation. " +
			"The person gets a link and a code word, opens the link in their phone's browser and can talk with you at once, without an account or an app. " +
			"Once the conversation is closed, only the police have it.\n\n" +
			"* `%[1]s new [label]` – start a secure conversation and get a link and code word\n" +
			"* `%[1]s help` – see all commands",
		msgWelcomeManagement: "This is your direct chat with sikkerchat: here commands also work without `%[1]s`.",
		msgListItem:          "* %s – %s, created %s · %s",
		msgListNoLabel:       "_no label_",
		msgListHeld:          "%s (legal hold)",
		msgAgeJustNow:        "just now",
		msgAgeMinutes:        "%d min ago",
		msgAgeHours:          "%d h ago",
		msgAgeDays:           "%d d ago",
		msgIdentityLockedOut: "⚠️ **Your encryption identity has changed**, so sikkerchat does not trust your devices until an administrator has approved the new one. " +
			"What you wrote was not passed on, and you see nothing from the conversations until then.\n\n" +
			"The administrators have been told. They will contact you outside Matrix (by phone or in person) to check that it was you " +
			"who reset your identity in Element. You can also contact them yourself.",
		msgIdentityChangedAdmin: "⚠️ **The encryption identity of %[1]s has changed.** Until an administrator has approved the new one, " +
			"the officer gets nothing from sikkerchat and cannot use commands.\n\n" +
			"This happens when someone resets their identity in Element (for example after losing the recovery key), " +
			"but also when someone else has got into the account. Contact the officer outside Matrix (by phone or in person) " +
			"and ask whether they reset their identity just now. Only if they say yes, type:\n\n`%[3]s trust %[1]s %[2]s`",
		msgIdentityTrustedOfficer: "✅ Your new encryption identity was approved by %s, and you can use sikkerchat again. " +
			"What you wrote while you were locked out was not passed on: send it again. " +
			"A device you have not verified with the new identity still gets nothing: verify it in Element.",
		msgTrustAdminOnly:  "Only an administrator can approve a new encryption identity.",
		msgTrustUsage:      "Usage: `%s trust @officer:domain KEY`. The key is in the notice about the changed identity.",
		msgTrustSelf:       "You cannot approve your own identity. Ask another administrator.",
		msgTrustNotOfficer: "%s has no access to sikkerchat.",
		msgTrustNothing:    "%s has no new encryption identity waiting for approval.",
		msgTrustPending: "The encryption identity of %[1]s has changed and waits for approval. " +
			"Once you have checked with the officer outside Matrix that it was them, type:\n\n`%[3]s trust %[1]s %[2]s`",
		msgTrustChangedAgain: "The key does not match the identity %s has now: it may have changed again. " +
			"See the latest notice, and check with the officer again.",
		msgTrusted: "✅ The new encryption identity of %s is approved and recorded in the audit trail. The officer can use sikkerchat again. " +
			"If the identity changes again, the officer is locked out again until an administrator approves it.",
	},
}

func (l Language) T(key messageKey, args ...any) string {
	text, ok := catalog[l][key]
	if !ok {
		text = catalog[LangBokmal][key]
	}
	if len(args) == 0 {
		return text
	}
	return fmt.Sprintf(text, args...)
}

func (l Language) statusName(s ConversationStatus) string {
	switch s {
	case StatusActive:
		return l.T(msgStatusActive)
	case StatusClosed:
		return l.T(msgStatusClosed)
	case StatusExpired:
		return l.T(msgStatusExpired)
	default:
		return l.T(msgStatusCreated)
	}
}

func (l Language) closeReason(reason, actor string) string {
	switch reason {
	case CloseInviteExpired:
		return l.T(msgCloseExpired)
	case CloseIdle:
		return l.T(msgCloseIdle)
	case CloseByProvisioning:
		return l.T(msgCloseProvisioning)
	default:
		return l.T(msgCloseByOfficer, actor)
	}
}

// age says roughly how long before now t was ("for 5 min siden").
func (l Language) age(t, now time.Time) string {
	switch d := now.Sub(t); {
	case d < time.Minute:
		return l.T(msgAgeJustNow)
	case d < time.Hour:
		return l.T(msgAgeMinutes, int(d/time.Minute))
	case d < 24*time.Hour:
		return l.T(msgAgeHours, int(d/time.Hour))
	default:
		return l.T(msgAgeDays, int(d/(24*time.Hour)))
	}
}

// closedNotice is what a room is told when its conversation closes: when it
// will be purged, or that a legal hold keeps it.
func (l Language) closedNotice(reason, actor string, purgeAfter time.Time, hold bool, prefix string) string {
	if hold {
		return l.T(msgClosedHeld, l.closeReason(reason, actor), prefix)
	}
	return l.T(msgClosed, l.closeReason(reason, actor), formatTime(purgeAfter, l), prefix)
}
