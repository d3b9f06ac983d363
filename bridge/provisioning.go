package bridge

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/matrix"

	"github.com/sikkerchat/sikkerchat/appservice"
	"github.com/sikkerchat/sikkerchat/internal/jsonbody"
)

// The provisioning API (bridgev2's, shared-secret auth; ?user_id= names the
// officer) gains conversation endpoints for case systems. They answer with
// the same facts as the room's state event. Documented in docs/provisioning-api.md.

// IntegratorActor is whom the audit trail names for a provisioning call made
// with the shared secret: whoever holds the secret, not the user it names.
const IntegratorActor = "integrator:shared-secret"

func registerProvisioning(sc *Connector) {
	api := &provisioningAPI{Connector: sc}
	if mc, ok := sc.Bridge.Matrix.(*matrix.Connector); ok && mc.Config != nil {
		api.sharedSecret = mc.Config.Provisioning.SharedSecret
	}
	mp, ok := api.Bridge.Matrix.(bridgev2.MatrixConnectorWithProvisioning)
	if !ok || mp.GetProvisioning() == nil {
		return
	}
	prov := mp.GetProvisioning()
	router := prov.GetRouter()
	if router == nil {
		return
	}
	officer := func(fn func(http.ResponseWriter, *http.Request, *bridgev2.User)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			user := prov.GetUser(r)
			if user != nil {
				// bridgev2 takes any ?user_id=, a bare server name too (and then
				// gives it that server's permissions).
				if _, _, err := user.MXID.Parse(); err != nil {
					mautrix.MInvalidParam.WithMessage("user_id must be a Matrix user ID").Write(w)
					return
				}
			}
			if user == nil || !user.Permissions.Login {
				mautrix.MForbidden.WithMessage("Only officers (bridge permission level user or above) can use sikkerchat").Write(w)
				return
			}
			fn(w, r, user)
		}
	}
	router.HandleFunc("POST /v3/sikkerchat/conversations", officer(api.provCreate))
	router.HandleFunc("GET /v3/sikkerchat/conversations", officer(api.provList))
	router.HandleFunc("GET /v3/sikkerchat/conversations/{id}", officer(api.provConversation(api.provGet)))
	router.HandleFunc("POST /v3/sikkerchat/conversations/{id}/close", officer(api.provConversation(api.provClose)))
	router.HandleFunc("GET /v3/sikkerchat/conversations/{id}/audit", officer(api.provAuditRoute))
	router.HandleFunc("POST /v3/sikkerchat/conversations/{id}/export", officer(api.provConversation(api.provExport)))
	router.HandleFunc("GET /v3/sikkerchat/stats", officer(api.provStats))
}

type provConversationResponse struct {
	*appservice.ConversationState
	RoomID string       `json:"room_id"`
	Label  string       `json:"label,omitempty"`
	Invite *InviteField `json:"no.sikkerchat.invite,omitempty"`
}

// provisioningAPI is sikkerchat's part of the provisioning API.
type provisioningAPI struct {
	*Connector
	// sharedSecret is bridgev2's provisioning secret, to tell its calls from
	// those made with an officer's own Matrix token.
	sharedSecret string
}

// actor is whom the audit trail names for a call that changes or exports
// something. With the shared secret the caller is whoever holds it (the case
// system), and ?user_id= is only its word for whom it acts: bridgev2 takes
// any user_id, an admin's too. So the row names the integrator, and the user
// it named goes to the log beside it. With an officer's own Matrix access
// token (provisioning.allow_matrix_auth), bridgev2 has asked the homeserver
// whose token it is: the row names that officer.
func (api *provisioningAPI) actor(r *http.Request, user *bridgev2.User) string {
	auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if api.sharedSecret != "" && subtle.ConstantTimeCompare([]byte(auth), []byte(api.sharedSecret)) == 0 {
		return user.MXID.String()
	}
	zerolog.Ctx(r.Context()).Info().Stringer("named_user_id", user.MXID).Str("actor", IntegratorActor).
		Msg("Provisioning call with the shared secret; the audit trail names the integrator")
	return IntegratorActor
}

func writeProvJSON(w http.ResponseWriter, status int, v any) {
	jsonbody.Write(w, status, v)
}

func (api *provisioningAPI) provResponse(ctx context.Context, conv *Conversation) provConversationResponse {
	return provConversationResponse{ConversationState: api.Conversations.StateOf(conv), RoomID: conv.RoomID.String(), Label: api.Transcript.OpenLabel(ctx, conv)}
}

// maxProvBody bounds a create request; a label of MaxLabelLength characters
// fits many times over.
const maxProvBody = 4096

// decodeProvBody reads an optional JSON object strictly: anything but one
// object of known fields in UTF-8 is M_NOT_JSON, more than maxProvBody bytes
// is M_TOO_LARGE. An empty body is an empty object.
func decodeProvBody(w http.ResponseWriter, r *http.Request, v any) bool {
	switch err := jsonbody.Read(w, r, v, jsonbody.Options{MaxBytes: maxProvBody, AllowEmpty: true, ObjectOnly: true}); {
	case errors.Is(err, jsonbody.ErrTooLarge):
		mautrix.MTooLarge.WithMessage(fmt.Sprintf("The body must be under %d bytes", maxProvBody)).Write(w)
		return false
	case err != nil:
		mautrix.MNotJSON.WithMessage("Body must be {\"label\": \"…\"}").Write(w)
		return false
	}
	return true
}

func (api *provisioningAPI) provCreate(w http.ResponseWriter, r *http.Request, user *bridgev2.User) {
	var req struct {
		Label string `json:"label"`
	}
	if !decodeProvBody(w, r, &req) {
		return
	}
	created, err := api.Conversations.CreateFor(r.Context(), user, req.Label, api.actor(r, user))
	switch {
	case errors.Is(err, ErrLabelTooLong):
		mautrix.MInvalidParam.WithMessage(err.Error()).Write(w)
		return
	case err != nil:
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to create conversation from provisioning")
		mautrix.MUnknown.WithMessage("Failed to create the conversation").Write(w)
		return
	}
	resp := api.provResponse(r.Context(), created.Conversation)
	invite := created.InviteField()
	resp.Invite = &invite
	writeProvJSON(w, http.StatusCreated, resp)
}

func (api *provisioningAPI) provList(w http.ResponseWriter, r *http.Request, user *bridgev2.User) {
	convs, err := api.DB.Conversation.ListByOfficer(r.Context(), user.MXID)
	if err != nil {
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to list conversations for provisioning")
		mautrix.MUnknown.WithMessage("Failed to list conversations").Write(w)
		return
	}
	out := make([]provConversationResponse, 0, len(convs))
	for _, c := range convs {
		out = append(out, api.provResponse(r.Context(), c))
	}
	writeProvJSON(w, http.StatusOK, map[string]any{"conversations": out})
}

// plausibleConversationID tells whether a path segment could name a
// conversation (IDs are short base32). Anything else names none, and must not
// reach the database: PostgreSQL answers NUL and invalid UTF-8 with an error.
func plausibleConversationID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f || c == '/' || c == '\\' {
			return false
		}
	}
	return true
}

// provLookup reads the conversation the path names (nil if there is none).
// When ok is false the answer has been written.
func (api *provisioningAPI) provLookup(w http.ResponseWriter, r *http.Request) (id string, conv *Conversation, ok bool) {
	id = r.PathValue("id")
	if !plausibleConversationID(id) {
		mautrix.MNotFound.WithMessage("No such conversation").Write(w)
		return id, nil, false
	}
	conv, err := api.DB.Conversation.Get(r.Context(), id)
	if err != nil {
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to get conversation for provisioning")
		mautrix.MUnknown.WithMessage("Failed to get the conversation").Write(w)
		return id, nil, false
	}
	return id, conv, true
}

// provConversation loads the conversation of the path; officers see the ones
// they created, admins all.
func (api *provisioningAPI) provConversation(fn func(http.ResponseWriter, *http.Request, *bridgev2.User, *Conversation)) func(http.ResponseWriter, *http.Request, *bridgev2.User) {
	return func(w http.ResponseWriter, r *http.Request, user *bridgev2.User) {
		_, conv, ok := api.provLookup(w, r)
		if !ok {
			return
		} else if conv == nil || (conv.CreatedBy != user.MXID && !user.Permissions.Admin) {
			mautrix.MNotFound.WithMessage("No such conversation").Write(w)
			return
		}
		fn(w, r, user, conv)
	}
}

func (api *provisioningAPI) provGet(w http.ResponseWriter, r *http.Request, user *bridgev2.User, conv *Conversation) {
	writeProvJSON(w, http.StatusOK, api.provResponse(r.Context(), conv))
}

func (api *provisioningAPI) provClose(w http.ResponseWriter, r *http.Request, user *bridgev2.User, conv *Conversation) {
	err := api.Conversations.Close(r.Context(), conv, api.actor(r, user), CloseByProvisioning)
	var undelivered *UndeliveredError
	if errors.Is(err, ErrAlreadyClosed) {
		mautrix.RespError{ErrCode: "NO.SIKKERCHAT.ALREADY_CLOSED", Err: "The conversation is already closed", StatusCode: http.StatusConflict}.Write(w)
		return
	} else if errors.As(err, &undelivered) {
		w.Header().Set("Retry-After", "30")
		mautrix.RespError{ErrCode: "NO.SIKKERCHAT.UNDELIVERED", StatusCode: http.StatusConflict,
			Err: fmt.Sprintf("%d messages from the guest have not reached the room yet; the conversation stays open until they have", undelivered.Count)}.Write(w)
		return
	} else if err != nil {
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to close conversation from provisioning")
		mautrix.MUnknown.WithMessage("Failed to close the conversation").Write(w)
		return
	}
	writeProvJSON(w, http.StatusOK, api.provResponse(r.Context(), conv))
}

// provAuditRoute serves the trail of a live conversation to its officer, and
// of any conversation, purged ones too (the trail outlives the purge), to admins.
func (api *provisioningAPI) provAuditRoute(w http.ResponseWriter, r *http.Request, user *bridgev2.User) {
	id, conv, ok := api.provLookup(w, r)
	if !ok {
		return
	}
	if conv == nil && user.Permissions.Admin {
		conv = &Conversation{ID: id}
	} else if conv == nil || (conv.CreatedBy != user.MXID && !user.Permissions.Admin) {
		mautrix.MNotFound.WithMessage("No such conversation").Write(w)
		return
	}
	api.provAudit(w, r, user, conv)
}

func (api *provisioningAPI) provAudit(w http.ResponseWriter, r *http.Request, user *bridgev2.User, conv *Conversation) {
	rows, err := api.Audit.ForConversation(r.Context(), conv.ID)
	if err != nil {
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to read audit trail for provisioning")
		mautrix.MUnknown.WithMessage("Failed to read the audit trail").Write(w)
		return
	}
	if len(rows) == 0 {
		mautrix.MNotFound.WithMessage("No such conversation").Write(w)
		return
	}
	chainErr := api.Audit.Verify(r.Context())
	resp := map[string]any{"conversation_id": conv.ID, "rows": rows, "chain_ok": chainErr == nil}
	if chainErr != nil {
		resp["chain_error"] = chainErr.Error()
	}
	writeProvJSON(w, http.StatusOK, resp)
}

func (api *provisioningAPI) provExport(w http.ResponseWriter, r *http.Request, user *bridgev2.User, conv *Conversation) {
	actor := api.actor(r, user)
	data, err := api.Evidence.BuildExport(r.Context(), conv, actor)
	if err != nil {
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to export conversation from provisioning")
		mautrix.MUnknown.WithMessage("Failed to build the export").Write(w)
		return
	}
	if err = api.Audit.Append(r.Context(), actor, AuditExport, conv.ID, "sha256 "+sha256Hex(data)); err != nil {
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to write audit row for export")
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="sikkerchat-`+conv.ID+`.zip"`)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

func (api *provisioningAPI) provStats(w http.ResponseWriter, r *http.Request, user *bridgev2.User) {
	days := 30
	if q := r.URL.Query().Get("days"); q != "" {
		var err error
		if days, err = strconv.Atoi(q); err != nil || days < 1 || days > 3660 {
			mautrix.MInvalidParam.WithMessage("days must be a number from 1 to 3660").Write(w)
			return
		}
	}
	st, err := Statistics(r.Context(), api.DB, days)
	if err != nil {
		zerolog.Ctx(r.Context()).Err(err).Msg("Failed to count statistics for provisioning")
		mautrix.MUnknown.WithMessage("Failed to count the statistics").Write(w)
		return
	}
	writeProvJSON(w, http.StatusOK, st)
}
