package meta

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a Graph API error answer:
// {"error":{"message","type","code","error_subcode","fbtrace_id"}}. The HTTP
// status is not a reliable guide (the same error comes as 400 or 403), so
// the class comes from the code and subcode.
type Error struct {
	HTTPStatus int    `json:"-"`
	Message    string `json:"message"`
	Type       string `json:"type"`
	Code       int    `json:"code"`
	Subcode    int    `json:"error_subcode,omitempty"`
	UserTitle  string `json:"error_user_title,omitempty"`
	UserMsg    string `json:"error_user_msg,omitempty"`
	Transient  bool   `json:"is_transient,omitempty"`
	FBTraceID  string `json:"fbtrace_id,omitempty"`
}

// Error never includes Meta's message text: it may quote what was sent.
func (e *Error) Error() string {
	return fmt.Sprintf("graph api error %d/%d (%s, HTTP %d, class %s, fbtrace_id %s)", e.Code, e.Subcode, e.Type, e.HTTPStatus, e.Class(), e.FBTraceID)
}

// ErrorClass is what sikkerchat does about an error.
type ErrorClass string

const (
	// ClassWindowClosed: outside the allowed messaging window; never retried.
	ClassWindowClosed ErrorClass = "window_closed"
	// ClassHumanAgentNotApproved: the app may not use the HUMAN_AGENT tag.
	ClassHumanAgentNotApproved ErrorClass = "human_agent_not_approved"
	// ClassUnavailable: the person cannot be reached (blocked the page,
	// deactivated, not messageable).
	ClassUnavailable ErrorClass = "unavailable"
	// ClassToken: the access token is expired or invalid; the operator must act.
	ClassToken ErrorClass = "token"
	// ClassPermission: the app lacks a permission or review; the operator must act.
	ClassPermission ErrorClass = "permission"
	// ClassRateLimited: back off and retry.
	ClassRateLimited ErrorClass = "rate_limited"
	// ClassTransient: Meta's side failed; retry.
	ClassTransient ErrorClass = "transient"
	// ClassRefused: the request itself is refused (bad parameter, too large);
	// retrying the same request cannot help.
	ClassRefused ErrorClass = "refused"
)

// Class sorts the error by code and subcode (docs/research/meta-messaging.md §8).
func (e *Error) Class() ErrorClass {
	switch e.Code {
	case 10:
		switch e.Subcode {
		case 2018278, 2018065, 2018108, 2534022:
			return ClassWindowClosed
		}
		return ClassPermission
	case 100:
		switch e.Subcode {
		case 2018276:
			return ClassHumanAgentNotApproved
		case 2018001, 2534014:
			return ClassUnavailable
		}
		return ClassRefused
	case 551:
		return ClassUnavailable
	case 200:
		if e.Subcode == 1545041 {
			return ClassUnavailable
		}
		return ClassPermission
	case 230, 368:
		return ClassPermission
	case 190, 102:
		return ClassToken
	case 4, 9, 17, 32, 613, 80006:
		return ClassRateLimited
	case 1, 2, 1200:
		return ClassTransient
	}
	if e.Transient || e.HTTPStatus >= 500 {
		return ClassTransient
	}
	if e.HTTPStatus == http.StatusTooManyRequests {
		return ClassRateLimited
	}
	return ClassRefused
}

// Retryable reports whether sending the same request again later can work.
func (e *Error) Retryable() bool {
	switch e.Class() {
	case ClassRateLimited, ClassTransient:
		return true
	}
	return false
}

// ClassOf is the class of any error a Graph call returns: network errors
// and answers that are not Graph errors (a proxy's 502) are transient.
func ClassOf(err error) ErrorClass {
	var ge *Error
	if errors.As(err, &ge) {
		return ge.Class()
	}
	var he *HTTPError
	if errors.As(err, &he) {
		switch {
		case he.Status == http.StatusTooManyRequests:
			return ClassRateLimited
		case he.Status >= 500:
			return ClassTransient
		case he.Status == http.StatusUnauthorized:
			return ClassToken
		}
		return ClassRefused
	}
	if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrMediaURL) || errors.Is(err, ErrMediaAddress) || errors.Is(err, ErrTooManyRedirects) {
		return ClassRefused
	}
	return ClassTransient
}

// HTTPError is an answer that is neither success nor a Graph error body.
type HTTPError struct{ Status int }

func (e *HTTPError) Error() string { return fmt.Sprintf("graph api answered HTTP %d", e.Status) }
