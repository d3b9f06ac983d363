package bridge

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"go.mau.fi/util/random"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/format"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
)

var helpSectionSikkerchat = commands.HelpSection{Name: "sikkerchat", Order: 5}

// officerCommands are the `!sc` commands.
type officerCommands struct {
	*Connector
	// unknown holds the handlers that answer bridgev2's own commands.
	unknown map[string]*commands.FullHandler
	// known are the names (and aliases) of sikkerchat's commands.
	known map[string]bool
	// plain notes the management room messages written without the prefix.
	plain plainMessages
}

// sikkerchatCommands are the only commands the bot answers. bridgev2 brings
// its own for networks with logins and chats to manage; in sikkerchat they
// would let an officer or an admin go around close, retention and the audit
// trail (delete-portal, delete-all-portals), act as someone else (sudo, doin,
// which would put the wrong actor in the audit trail), break their routing
// (logout, set-preferred-login) or poke at bridge internals (debug-*,
// filter). Every one of them answers "unknown command".
var sikkerchatCommands = []string{"new", "status", "reissue", "close", "hold", "unhold", "audit", "list", "add", "export", "stats", "trust", "help"}

// bridgeBuiltins names bridgev2's commands, for when its processor cannot be
// read (registeredCommands finds every one it has).
var bridgeBuiltins = []string{
	"cancel", "debug-register-push", "debug-account-data", "debug-reset-network", "delete-portal", "delete-all-portals",
	"set-management-room", "login", "relogin", "list-logins", "logout", "set-preferred-login", "set-relay", "unset-relay",
	"resolve-identifier", "start-chat", "create-group", "search", "create-portal", "id", "unbridge", "bridge", "sync-portal",
	"mute", "delete-chat", "filter", "sudo", "doin", "import-image-pack",
}

// registeredCommands lists every command name the processor has, including
// ones a later bridgev2 may add, so that none of them slips through.
func registeredCommands(proc *commands.Processor) []string {
	handlers := reflect.ValueOf(proc).Elem().FieldByName("handlers")
	if !handlers.IsValid() || handlers.Kind() != reflect.Map || handlers.Type().Key().Kind() != reflect.String {
		return bridgeBuiltins
	}
	names := make([]string, 0, handlers.Len())
	for _, key := range handlers.MapKeys() {
		names = append(names, key.String())
	}
	return append(names, bridgeBuiltins...)
}

func registerCommands(sc *Connector, proc *commands.Processor) *officerCommands {
	oc := &officerCommands{Connector: sc, unknown: map[string]*commands.FullHandler{}}
	for _, name := range registeredCommands(proc) {
		if !slices.Contains(sikkerchatCommands, name) {
			oc.unknown[name] = &commands.FullHandler{Func: oc.finishing(oc.cmdUnknown), Name: name}
			proc.AddHandler(oc.unknown[name])
		}
	}
	handlers := []*commands.FullHandler{
		&commands.FullHandler{
			Func:    oc.officerOnly(oc.cmdNew),
			Name:    "new",
			Aliases: []string{"secure"},
			Help:    commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Create a secure conversation", Args: "[label]"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.cmdStatus),
			Name: "status",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Show conversation status"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.cmdReissue),
			Name: "reissue",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Make a new link and code word"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.cmdClose),
			Name: "close",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "End the conversation"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.inConversation(func(ce *commands.Event, conv *Conversation) { oc.cmdHold(ce, conv, true) })),
			Name: "hold",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Place a legal hold"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.inConversation(func(ce *commands.Event, conv *Conversation) { oc.cmdHold(ce, conv, false) })),
			Name: "unhold",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Lift a legal hold"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.inConversation(oc.cmdAudit)),
			Name: "audit",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Show the audit trail"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.cmdList),
			Name: "list",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "List open conversations"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.inConversation(oc.cmdAdd)),
			Name: "add",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Bring a colleague in", Args: "<@officer:domain>"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.inConversation(oc.cmdExport)),
			Name: "export",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Make an evidence package"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.cmdStats),
			Name: "stats",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Anonymous statistics", Args: "[days]"},
		},
		&commands.FullHandler{
			Func: oc.officerOnly(oc.cmdTrust),
			Name: "trust",
			Help: commands.HelpMeta{Section: helpSectionSikkerchat, Description: "Trust an officer's new cross-signing identity (admin)", Args: "<@officer:domain> [master key]"},
		},
		// Replaces bridgev2's English help: officers get the commands they use, in their language.
		&commands.FullHandler{
			Func:    oc.officerOnly(oc.cmdHelp),
			Name:    "help",
			Aliases: []string{"hjelp"},
			Help:    commands.HelpMeta{Section: commands.HelpSectionGeneral, Description: "Show help"},
		},
	}
	oc.known = map[string]bool{}
	for _, h := range handlers {
		h.Func = oc.finishing(h.Func)
		proc.AddHandler(h)
		oc.known[h.Name] = true
		for _, alias := range h.Aliases {
			oc.known[alias] = true
		}
	}
	oc.unknown[unknownCommandName] = &commands.FullHandler{Func: oc.finishing(oc.cmdUnknown), Name: unknownCommandName}
	proc.AddHandler(oc.unknown[unknownCommandName])
	proc.AddHandler(&commands.FullHandler{Func: oc.finishing(oc.cmdPlainMessage), Name: plainMessageName})
	return oc
}

// unknownCommandName is where the gate sends every name that is not one of
// sikkerchat's commands.
const unknownCommandName = "unknown-command"

// commandGate stands in front of bridgev2's processor. A name the processor
// has no handler for would get bridgev2's English answer and never leave the
// inbox (so a restart would answer it again); bridgev2's own commands and
// those a later bridgev2 adds after Init (mxmain's "version") must not run at
// all. Every name that is not sikkerchat's reaches the bokmål "unknown
// command" answer, and nothing of what was typed goes further.
//
// In an officer's management room bridgev2 hands on unprefixed messages
// too. Of those, only text can be a command; anything else gets a help line
// (plainMessageName), except a notice: that is how bots write, and answering
// one could start two bots talking to each other.
type commandGate struct {
	*commands.Processor
	oc *officerCommands
}

func (g commandGate) Handle(ctx context.Context, roomID id.RoomID, eventID id.EventID, user *bridgev2.User, message string, replyTo id.EventID) {
	fields := strings.Fields(message)
	known := len(fields) > 0 && g.oc.known[strings.ToLower(fields[0])]
	if msgType, plain := g.oc.takeNote(eventID); plain {
		switch {
		case msgType == event.MsgNotice:
			return
		case msgType != event.MsgText || !known:
			message = plainMessageName
		}
	} else if !known {
		message = unknownCommandName
	}
	g.Processor.Handle(ctx, roomID, eventID, user, message, replyTo)
}

// finishing takes a command out of the inbox once it has run: a command is
// never for the guest, and running it twice after a restart would be wrong.
func (oc *officerCommands) finishing(fn func(*commands.Event)) func(*commands.Event) {
	return func(ce *commands.Event) {
		defer oc.Inbox.finish(ce.Ctx, ce.EventID, nil)
		fn(ce)
	}
}

// officerOnly refuses, politely and in the officer language, anyone whom the
// bridge permissions do not let use sikkerchat (the `user` level or above).
func (oc *officerCommands) officerOnly(fn func(*commands.Event)) func(*commands.Event) {
	return func(ce *commands.Event) {
		if !ce.User.Permissions.Login {
			ce.Log.Info().Stringer("user_id", ce.User.MXID).Str("command", ce.Command).Msg("Refused command from user who is not an officer")
			oc.reply(ce, oc.Config.validatedLanguage.T(msgNotOfficer))
			return
		}
		fn(ce)
	}
}

func (oc *officerCommands) cmdUnknown(ce *commands.Event) {
	oc.reply(ce, oc.Config.validatedLanguage.T(msgUnknownCommand, oc.Config.commandPrefix))
}

func (oc *officerCommands) cmdHelp(ce *commands.Event) {
	oc.reply(ce, oc.Config.validatedLanguage.T(msgHelp, oc.Config.commandPrefix))
}

func (oc *officerCommands) cmdNew(ce *commands.Event) {
	lang := oc.Config.validatedLanguage
	th := oc.socialRoom(ce)
	if th != nil {
		if th.Status != scdb.SocialOpen {
			oc.reply(ce, lang.T(msgReissueClosed))
			return
		} else if oc.Social.refuseOutsideWindow(ce.Ctx, th, ce.EventID) {
			return
		}
	}
	origin := ""
	if th != nil {
		origin = oc.Social.originNotice(th)
	}
	created, err := oc.Conversations.CreateFrom(ce.Ctx, ce.User, ce.RawArgs, origin)
	switch {
	case errors.Is(err, ErrLabelTooLong):
		oc.reply(ce, lang.T(msgLabelTooLong, MaxLabelLength))
		return
	case errors.Is(err, ErrEncryptionDisabled):
		oc.reply(ce, lang.T(msgEncryptionOff))
		return
	case err != nil:
		oc.failed(ce, err, msgCreateFailed, "Failed to create conversation")
		return
	}
	if _, err = oc.Conversations.sendInviteReply(ce.Ctx, ce.RoomID, ce.EventID, created); err != nil {
		// The officer cannot hand out a link they never saw: delete the conversation
		// (and with it the invite) rather than leave a live link nobody knows.
		traceID := random.String(8)
		ce.Log.Err(err).Str("trace_id", traceID).Str("conversation_id", created.Conversation.ID).Msg("Failed to send invite reply")
		_ = oc.Transcript.DestroyKey(created.Conversation.ID)
		if delErr := oc.DB.Conversation.Delete(ce.Ctx, created.Conversation.ID); delErr != nil {
			ce.Log.Err(delErr).Str("conversation_id", created.Conversation.ID).Msg("Failed to delete conversation whose invite was never delivered")
		}
		oc.reply(ce, lang.T(msgCreateFailed, traceID))
		return
	}
	if th != nil {
		if err = oc.Social.Move(ce.Ctx, th, created, ce.User.MXID.String()); err != nil {
			oc.failed(ce, err, msgCommandFailed, "Failed to send the secure conversation to the person")
		}
	}
}

// socialRoom is the patrol inbox conversation of the command's room (nil in
// any other room, or without the patrol inbox).
func (oc *officerCommands) socialRoom(ce *commands.Event) *SocialConversation {
	if oc.Social == nil {
		return nil
	}
	th, err := oc.DB.Social.GetByRoom(ce.Ctx, ce.RoomID)
	if err != nil {
		ce.Log.Err(err).Msg("Failed to look up a social conversation for a command")
		return nil
	}
	return th
}

func (oc *officerCommands) cmdReissue(ce *commands.Event) {
	lang := oc.Config.validatedLanguage
	conv, err := oc.DB.Conversation.GetByRoom(ce.Ctx, ce.RoomID)
	if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to get conversation for reissue")
		return
	} else if conv == nil {
		oc.reply(ce, lang.T(msgNotInConversation))
		return
	}
	created, err := oc.Conversations.Reissue(ce.Ctx, conv, ce.User.MXID.String())
	if errors.Is(err, ErrConversationNotOpen) {
		oc.reply(ce, lang.T(msgReissueClosed))
		return
	} else if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to reissue invite")
		return
	}
	text := lang.T(msgReissued, created.GuestName, created.URL, created.Code, formatTime(conv.InviteExpiresAt, lang))
	content := renderNotice(text)
	content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(ce.EventID)
	quietCtx := quietContext(ce.Log.WithContext(ce.Ctx))
	_, err = oc.Bridge.Bot.SendMessage(quietCtx, ce.RoomID, event.EventMessage, &event.Content{
		Parsed: content,
		Raw:    map[string]any{"no.sikkerchat.invite": created.InviteField()},
	}, nil)
	if err != nil {
		ce.Log.Err(err).Str("conversation_id", conv.ID).Msg("Failed to send reissued invite")
	}
	if oc.Social != nil {
		// Moved from Messenger or Instagram: the new link goes there the same way.
		if _, err = oc.Social.Reissued(ce.Ctx, created); err != nil {
			oc.failed(ce, err, msgCommandFailed, "Failed to send the new link to the person")
		}
	}
}

func (oc *officerCommands) cmdClose(ce *commands.Event) {
	lang := oc.Config.validatedLanguage
	if th := oc.socialRoom(ce); th != nil {
		if err := oc.Social.Close(ce.Ctx, th, ce.User.MXID.String(), CloseByOfficer); errors.Is(err, ErrAlreadyClosed) {
			oc.reply(ce, lang.T(msgAlreadyClosed))
		} else if err != nil {
			oc.failed(ce, err, msgCommandFailed, "Failed to close social conversation")
		}
		return
	}
	conv, err := oc.DB.Conversation.GetByRoom(ce.Ctx, ce.RoomID)
	if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to get conversation for close")
		return
	} else if conv == nil {
		oc.reply(ce, lang.T(msgNotInConversation))
		return
	}
	err = oc.Conversations.Close(ce.Ctx, conv, ce.User.MXID.String(), CloseByOfficer)
	var undelivered *UndeliveredError
	if errors.Is(err, ErrAlreadyClosed) {
		oc.reply(ce, lang.T(msgAlreadyClosed))
	} else if errors.As(err, &undelivered) {
		oc.reply(ce, lang.T(msgCloseUndelivered, undelivered.Count))
	} else if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to close conversation")
	}
}

// inConversation runs a command that only makes sense in a conversation room.
func (oc *officerCommands) inConversation(fn func(*commands.Event, *Conversation)) func(*commands.Event) {
	return func(ce *commands.Event) {
		lang := oc.Config.validatedLanguage
		conv, err := oc.DB.Conversation.GetByRoom(ce.Ctx, ce.RoomID)
		if err != nil {
			oc.failed(ce, err, msgCommandFailed, "Failed to get conversation for command")
			return
		} else if conv == nil {
			if th := oc.socialRoom(ce); th != nil {
				// Hold, audit and export work on a social conversation's room too.
				conv = socialAsConversation(th)
			} else {
				oc.reply(ce, lang.T(msgNotInConversation))
				return
			}
		}
		fn(ce, conv)
	}
}

// maxHoldReason bounds the reason for lifting a hold (an audit detail).
const maxHoldReason = 500

// cmdHold places a legal hold (any officer of the conversation) or lifts one:
// only an admin can, with a reason that goes into the audit trail, because
// lifting a hold lets the room be purged.
func (oc *officerCommands) cmdHold(ce *commands.Event, conv *Conversation, hold bool) {
	lang := oc.Config.validatedLanguage
	reason := strings.Join(strings.Fields(ce.RawArgs), " ")
	if !hold {
		if !ce.User.Permissions.Admin {
			oc.reply(ce, lang.T(msgUnholdAdminOnly))
			return
		} else if reason == "" || utf8.RuneCountInString(reason) > maxHoldReason {
			oc.reply(ce, lang.T(msgUnholdUsage, oc.Config.commandPrefix))
			return
		}
	}
	var err error
	if th := oc.socialRoom(ce); th != nil {
		err = oc.Social.SetHold(ce.Ctx, th, ce.User.MXID.String(), hold, reason)
	} else {
		err = oc.Conversations.SetHold(ce.Ctx, conv, ce.User.MXID.String(), hold, reason)
	}
	if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to set hold")
		return
	}
	if hold {
		oc.reply(ce, lang.T(msgHoldOn))
	} else {
		oc.reply(ce, lang.T(msgHoldOff, formatTime(conv.PurgeAfter, lang)))
	}
}

func (oc *officerCommands) cmdAudit(ce *commands.Event, conv *Conversation) {
	lang := oc.Config.validatedLanguage
	rows, err := oc.Audit.ForConversation(ce.Ctx, conv.ID)
	if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to read audit trail")
		return
	}
	var sb strings.Builder
	sb.WriteString(lang.T(msgAuditHeader, conv.ID))
	for _, r := range rows {
		fmt.Fprintf(&sb, "\n%d. %s · `%s` · %s", r.Seq, formatTime(r.At, lang), r.Action, r.Actor)
		if r.Detail != "" {
			fmt.Fprintf(&sb, " (%s)", r.Detail)
		}
	}
	if err = oc.Audit.Verify(ce.Ctx); err != nil {
		sb.WriteString("\n\n⚠️ " + lang.T(msgAuditBroken, err.Error()))
	} else {
		sb.WriteString("\n\n" + lang.T(msgAuditOK))
	}
	oc.reply(ce, sb.String())
}

func (oc *officerCommands) cmdList(ce *commands.Event) {
	lang := oc.Config.validatedLanguage
	convs, err := oc.DB.Conversation.ListOpenByOfficer(ce.Ctx, ce.User.MXID)
	if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to list conversations")
		return
	}
	if len(convs) == 0 {
		oc.reply(ce, lang.T(msgListEmpty))
		return
	}
	// An officer with many open conversations finds one by its label, state
	// and age; the ID links to the room and is what other tools name.
	now := time.Now()
	var sb strings.Builder
	sb.WriteString(lang.T(msgListHeader))
	for _, c := range convs {
		label := lang.T(msgListNoLabel)
		if open := oc.Transcript.OpenLabel(ce.Ctx, c); open != "" {
			label = "**" + format.EscapeMarkdown(open) + "**"
		}
		state := lang.statusName(c.Status)
		if c.Hold {
			state = lang.T(msgListHeld, state)
		}
		link := fmt.Sprintf("[%s](https://matrix.to/#/%s)", c.ID, c.RoomID)
		sb.WriteString("\n" + lang.T(msgListItem, label, state, lang.age(c.CreatedAt, now), link))
	}
	oc.reply(ce, sb.String())
}

func (oc *officerCommands) cmdAdd(ce *commands.Event, conv *Conversation) {
	lang := oc.Config.validatedLanguage
	if len(ce.Args) != 1 {
		oc.reply(ce, lang.T(msgAddUsage, oc.Config.commandPrefix))
		return
	}
	colleague := id.UserID(ce.Args[0])
	if local, _, err := colleague.ParseAndValidateRelaxed(); err != nil || local == "" {
		oc.reply(ce, lang.T(msgAddUsage, oc.Config.commandPrefix))
		return
	}
	if !oc.Bridge.Config.Permissions.Get(colleague).Login {
		oc.reply(ce, lang.T(msgAddNotOfficer, colleague))
		return
	}
	if conv.Status == StatusClosed || conv.Status == StatusExpired {
		// Closed rooms stay with whoever is in them; a colleague joins an open one.
		oc.reply(ce, lang.T(msgReissueClosed))
		return
	}
	user, err := oc.Bridge.GetUserByMXID(ce.Ctx, colleague)
	if err == nil {
		_, err = oc.Conversations.ensureOfficerLogin(ce.Ctx, user)
	}
	if err == nil {
		err = oc.Matrix.InviteOfficer(ce.Ctx, conv, colleague)
	}
	if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to add officer")
		return
	}
	if err = oc.Audit.Append(ce.Ctx, ce.User.MXID.String(), AuditAddOfficer, conv.ID, colleague.String()); err != nil {
		ce.Log.Err(err).Msg("Failed to write audit row for add officer")
	}
	oc.reply(ce, lang.T(msgAdded, colleague))
}

func (oc *officerCommands) cmdExport(ce *commands.Event, conv *Conversation) {
	lang := oc.Config.validatedLanguage
	name, err := oc.Evidence.Export(ce.Ctx, conv, ce.User.MXID.String())
	if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to export conversation")
		return
	}
	oc.reply(ce, lang.T(msgExported, name))
}

func (oc *officerCommands) cmdStats(ce *commands.Event) {
	lang := oc.Config.validatedLanguage
	days := 30
	if len(ce.Args) > 0 {
		n, err := strconv.Atoi(ce.Args[0])
		if err != nil || n < 1 || n > 3660 || len(ce.Args) > 1 {
			oc.reply(ce, lang.T(msgStatsUsage, oc.Config.commandPrefix))
			return
		}
		days = n
	}
	st, err := Statistics(ce.Ctx, oc.DB, days)
	if err != nil {
		oc.failed(ce, err, msgCommandFailed, "Failed to compute statistics")
		return
	}
	dur := func(s *float64) string {
		if s == nil {
			return "–"
		}
		return (time.Duration(*s) * time.Second).Round(time.Second).String()
	}
	oc.reply(ce, lang.T(msgStats, st.Days, st.Created, st.Opened, st.Closed, st.Expired,
		dur(st.MedianSecondsToOpen), dur(st.MedianSecondsToClose),
		st.Messages[string(FromGuest)], st.Messages[string(ToGuest)], st.Files[string(FromGuest)], st.Files[string(ToGuest)]))
}

func (oc *officerCommands) cmdStatus(ce *commands.Event) {
	lang := oc.Config.validatedLanguage
	conv, err := oc.DB.Conversation.GetByRoom(ce.Ctx, ce.RoomID)
	if err != nil {
		oc.failed(ce, err, msgStatusFailed, "Failed to get conversation for status")
		return
	}
	if conv == nil {
		count, err := oc.DB.Conversation.CountOpenByOfficer(ce.Ctx, ce.User.MXID)
		if err != nil {
			oc.failed(ce, err, msgStatusFailed, "Failed to count conversations for status")
			return
		}
		oc.reply(ce, lang.T(msgStatusOverview, count, oc.Config.commandPrefix))
		return
	}
	guest := oc.Conversations.StateOf(conv).Guest
	oc.reply(ce, lang.T(msgStatusConversation, conv.ID, lang.statusName(conv.Status),
		formatTime(conv.CreatedAt, lang), conv.CreatedBy, guest, formatTime(conv.InviteExpiresAt, lang)))
	zerolog.Ctx(ce.Ctx).Debug().Str("conversation_id", conv.ID).Msg("Sent conversation status")
}

// failed logs what went wrong under a trace ID and tells the officer the ID
// (never the error itself, which can carry what does not belong in a room).
func (oc *officerCommands) failed(ce *commands.Event, err error, key messageKey, logMessage string) {
	traceID := random.String(8)
	ce.Log.Err(err).Str("trace_id", traceID).Msg(logMessage)
	oc.reply(ce, oc.Config.validatedLanguage.T(key, traceID))
}

// reply answers a command as a notice that replies to it, so that an officer
// with several commands in flight sees which answer is which.
func (oc *officerCommands) reply(ce *commands.Event, markdown string) {
	content := renderNotice(markdown)
	if ce.EventID != "" {
		content.RelatesTo = (&event.RelatesTo{}).SetReplyTo(ce.EventID)
	}
	if _, err := oc.Bridge.Bot.SendMessage(ce.Ctx, ce.OrigRoomID, event.EventMessage, &event.Content{Parsed: content}, nil); err != nil {
		ce.Log.Err(err).Msg("Failed to reply to command")
	}
}

func renderNotice(markdown string) *event.MessageEventContent {
	content := format.RenderMarkdown(markdown, true, false)
	content.MsgType = event.MsgNotice
	return &content
}
