package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"maunium.net/go/mautrix/id"
)

// RoomPurger deletes a room and its history from the homeserver for good.
// Retention relies on it: Synapse's own retention skips state events and a
// room's last event, so the bridge enforces purging through the admin API.
type RoomPurger interface {
	PurgeRoom(ctx context.Context, roomID id.RoomID) error
}

// AdminAPI is what both adapters share: a homeserver URL, an admin user's
// access token and an HTTP client.
type AdminAPI struct {
	BaseURL string
	Token   string
	HTTP    *http.Client
}

func (a *AdminAPI) do(ctx context.Context, method, path string, body any, out any) error {
	var reader io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reader = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(a.BaseURL, "/")+path, reader)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := a.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		return &AdminError{Status: resp.StatusCode, Body: string(data)}
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// AdminError is a refused admin API call.
type AdminError struct {
	Status int
	Body   string
}

func (e *AdminError) Error() string {
	return fmt.Sprintf("admin API answered %d: %s", e.Status, e.Body)
}

// DendriteAdmin purges with Dendrite's admin API (purgeRoom: the room's
// events and state are deleted from the roomserver and the sync API).
// Dendrite v0.15.2 panics when purgeRoom follows evacuateRoom while the
// evacuation's leave events are still being processed, so no evacuation:
// the purge alone takes the room away from every member.
type DendriteAdmin struct{ AdminAPI }

func (d *DendriteAdmin) PurgeRoom(ctx context.Context, roomID id.RoomID) error {
	escaped := url.PathEscape(roomID.String())
	if err := d.do(ctx, http.MethodPost, "/_dendrite/admin/purgeRoom/"+escaped, nil, nil); err != nil {
		return fmt.Errorf("failed to purge room: %w", err)
	}
	return nil
}

// SynapseAdmin purges with Synapse's Delete Room API (v2, asynchronous):
// every member is removed, the room is blocked from rejoining and purged, and
// the call waits until Synapse reports the purge complete.
type SynapseAdmin struct {
	AdminAPI
	// PollInterval between delete-status checks (default 1 s).
	PollInterval time.Duration
}

type synapseDeleteStatus struct {
	Results []struct {
		DeleteID string `json:"delete_id"`
		Status   string `json:"status"`
		Error    string `json:"error"`
	} `json:"results"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

func (s *SynapseAdmin) PurgeRoom(ctx context.Context, roomID id.RoomID) error {
	escaped := url.PathEscape(roomID.String())
	var started struct {
		DeleteID string `json:"delete_id"`
	}
	err := s.do(ctx, http.MethodDelete, "/_synapse/admin/v2/rooms/"+escaped,
		map[string]any{"block": true, "purge": true, "force_purge": true}, &started)
	if err != nil {
		return fmt.Errorf("failed to start room deletion: %w", err)
	}
	if started.DeleteID == "" {
		return fmt.Errorf("room deletion started without a delete_id")
	}
	interval := s.PollInterval
	if interval <= 0 {
		interval = time.Second
	}
	for {
		var st synapseDeleteStatus
		if err = s.do(ctx, http.MethodGet, "/_synapse/admin/v2/rooms/delete_status/"+url.PathEscape(started.DeleteID), nil, &st); err != nil {
			return fmt.Errorf("failed to check room deletion: %w", err)
		}
		status, errText := st.Status, st.Error
		if status == "" && len(st.Results) > 0 {
			status, errText = st.Results[0].Status, st.Results[0].Error
		}
		switch status {
		case "complete":
			return nil
		case "failed":
			return fmt.Errorf("synapse failed to delete the room: %s", errText)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
