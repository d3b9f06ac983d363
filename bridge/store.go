package bridge

import (
	"github.com/sikkerchat/sikkerchat/bridge/scdb"
)

// The rows of sikkerchat's tables, as the rest of sikkerchat (the guest
// listener, tools) knows them.
type (
	Conversation       = scdb.Conversation
	ConversationStatus = scdb.ConversationStatus
	Invite             = scdb.Invite
	GuestSession       = scdb.GuestSession
	Direction          = scdb.Direction
	EntryStatus        = scdb.EntryStatus
	AuditRow           = scdb.AuditRow
)

const (
	StatusCreated = scdb.StatusCreated
	StatusActive  = scdb.StatusActive
	StatusClosed  = scdb.StatusClosed
	StatusExpired = scdb.StatusExpired

	ToGuest   = scdb.ToGuest
	FromGuest = scdb.FromGuest

	EntryStored    = scdb.EntryStored
	EntryDelivered = scdb.EntryDelivered
	EntryFailed    = scdb.EntryFailed
	EntryRead      = scdb.EntryRead
)
