package metasim

import (
	"encoding/json"
	"html/template"
	"io"
	"net/http"
	"time"
)

// control serves /_sim/: what a test (or a person trying sikkerchat locally)
// makes the simulated people and Meta do, and what Meta received.
func (s *Sim) control(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sim/{$}", s.page)
	mux.HandleFunc("GET /_sim/page.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		_, _ = io.WriteString(w, pageJS)
	})
	mux.HandleFunc("POST /_sim/message", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Incoming
			AgoMS int64 `json:"ago_ms"`
		}
		if !readJSON(w, r, &in) {
			return
		}
		in.Incoming.Ago = time.Duration(in.AgoMS) * time.Millisecond
		mid, err := s.Message(in.Incoming)
		reply(w, map[string]string{"mid": mid}, err)
	})
	mux.HandleFunc("POST /_sim/event", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Account string         `json:"account"`
			Person  string         `json:"person"`
			Part    string         `json:"part"`
			Value   map[string]any `json:"value"`
		}
		if readJSON(w, r, &in) {
			reply(w, map[string]bool{"ok": true}, s.Event(in.Account, in.Person, in.Part, in.Value))
		}
	})
	mux.HandleFunc("POST /_sim/page_reply", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Account, Person, Text string }
		if readJSON(w, r, &in) {
			mid, err := s.PageReply(in.Account, in.Person, in.Text)
			reply(w, map[string]string{"mid": mid}, err)
		}
	})
	mux.HandleFunc("POST /_sim/raw", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Body      string `json:"body"`
			Signature string `json:"signature"`
		}
		if readJSON(w, r, &in) {
			s.Raw([]byte(in.Body), in.Signature)
			reply(w, map[string]bool{"ok": true}, nil)
		}
	})
	mux.HandleFunc("POST /_sim/person", func(w http.ResponseWriter, r *http.Request) {
		var p Person
		if readJSON(w, r, &p) {
			s.AddPerson(p)
			reply(w, map[string]bool{"ok": true}, nil)
		}
	})
	mux.HandleFunc("POST /_sim/block", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Person  string `json:"person"`
			Blocked bool   `json:"blocked"`
		}
		if readJSON(w, r, &in) {
			s.Block(in.Person, in.Blocked)
			reply(w, map[string]bool{"ok": true}, nil)
		}
	})
	mux.HandleFunc("POST /_sim/send_outage", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Status int `json:"status"`
		}
		if readJSON(w, r, &in) {
			s.SetSendOutage(in.Status)
			reply(w, map[string]bool{"ok": true}, nil)
		}
	})
	mux.HandleFunc("POST /_sim/fail_next", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			N       int `json:"n"`
			Code    int `json:"code"`
			Subcode int `json:"subcode"`
		}
		if readJSON(w, r, &in) {
			s.FailNext(in.N, in.Code, in.Subcode)
			reply(w, map[string]bool{"ok": true}, nil)
		}
	})
	mux.HandleFunc("POST /_sim/webhooks", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Paused bool   `json:"paused"`
			URL    string `json:"url"`
		}
		if readJSON(w, r, &in) {
			if in.URL != "" {
				s.SetWebhookURL(in.URL)
			}
			s.PauseWebhooks(in.Paused)
			reply(w, map[string]bool{"ok": true}, nil)
		}
	})
	mux.HandleFunc("POST /_sim/expire_media", func(w http.ResponseWriter, r *http.Request) {
		s.ExpireMedia()
		reply(w, map[string]bool{"ok": true}, nil)
	})
	mux.HandleFunc("GET /_sim/sends", func(w http.ResponseWriter, r *http.Request) { reply(w, s.Sends(), nil) })
	mux.HandleFunc("GET /_sim/deliveries", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]any{"deliveries": s.Deliveries(), "pending": s.Pending()}, nil)
	})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<20)).Decode(v); err != nil {
		http.Error(w, "bad JSON: "+err.Error(), http.StatusBadRequest)
		return false
	}
	return true
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}

var pageTmpl = template.Must(template.New("p").Parse(`<!doctype html>
<html lang="nb"><meta charset="utf-8"><title>Meta-simulator</title>
<style>body{font:16px system-ui;max-width:50rem;margin:2rem auto;padding:0 1rem}input,textarea,select{font:inherit;width:100%;margin:.2rem 0 .8rem}button{font:inherit;padding:.5rem 1rem}pre{white-space:pre-wrap;background:#f4f4f4;padding:.5rem}</style>
<h1>Meta-simulator (sikkerchat)</h1>
<p>Skriv som en person på Messenger eller Instagram. Meldingen går til sikkerchat som en signert webhook, slik Meta sender den.</p>
<form id="f"><label>Konto <select id="acct">{{range .Accounts}}<option value="{{.ID}}">{{if .Instagram}}Instagram{{else}}Messenger{{end}} {{.ID}}</option>{{end}}</select></label>
<label>Person-ID <input id="person" value="7010000000000001"></label>
<label>Melding <textarea id="text" rows="3"></textarea></label><button>Send</button></form>
<h2>Sendt fra sikkerchat til Meta</h2><pre id="sends"></pre>
<script src="/_sim/page.js"></script></html>`))

const pageJS = `document.getElementById('f').addEventListener('submit', async (e) => {
  e.preventDefault();
  await fetch('/_sim/message', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({
    account: document.getElementById('acct').value, person: document.getElementById('person').value,
    text: document.getElementById('text').value})});
  document.getElementById('text').value = '';
});
async function poll() {
  const sends = await (await fetch('/_sim/sends')).json();
  document.getElementById('sends').textContent = (sends || []).map((s) =>
    s.at + ' → ' + s.recipient + ' ' + (s.messaging_type || s.sender_action || '') + ' ' + (s.tag || '') + ' ' + (s.text || (s.attachment ? '[fil ' + s.attachment.name + ']' : '')) + (s.error ? ' FEIL ' + s.error + '/' + s.error_subcode : '')).join('\n');
  setTimeout(poll, 1000);
}
poll();`

func (s *Sim) page(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	accounts := append([]Account(nil), s.cfg.Accounts...)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTmpl.Execute(w, map[string]any{"Accounts": accounts})
}
