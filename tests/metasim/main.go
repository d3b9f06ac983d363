// Command metasim runs the Meta simulator (internal/metasim) on its own
// address, for the integration tests and for trying the patrol inbox locally
// (scripts/stack.sh up --meta-sim). It plays Meta: signed webhooks to the
// bridge, the Graph API the bridge calls, and a page under /_sim/ where a
// person can be made to write.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sikkerchat/sikkerchat/internal/metasim"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:29349", "address of the simulated Graph API and /_sim/")
	webhook := flag.String("webhook", "", "the bridge's webhook URL (network.meta.listen + /meta/webhook)")
	secret := flag.String("app-secret", "", "the app secret webhooks are signed with")
	appID := flag.String("app-id", "", "the app's ID (echoes of its sends carry it)")
	page := flag.String("page", "", "the Facebook Page's ID")
	token := flag.String("page-token", "", "the Page access token")
	instagram := flag.String("instagram", "", "the linked Instagram account's ID (empty: none)")
	humanAgent := flag.Bool("human-agent", false, "the app has the Human Agent feature")
	retries := flag.String("retry", "0s,500ms,1s,2s,5s", "waits between webhook attempts (the last repeats)")
	giveUp := flag.Duration("give-up", time.Hour, "how long a failing webhook is retried")
	timeout := flag.Duration("timeout", 5*time.Second, "how long Meta waits for an answer")
	flag.Parse()
	if *secret == "" || *page == "" || *token == "" || *webhook == "" {
		fmt.Fprintln(os.Stderr, "metasim: -app-secret, -page, -page-token and -webhook are needed")
		os.Exit(2)
	}
	var delays []time.Duration
	for _, d := range strings.Split(*retries, ",") {
		v, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			fmt.Fprintln(os.Stderr, "metasim: -retry:", err)
			os.Exit(2)
		}
		delays = append(delays, v)
	}
	accounts := []metasim.Account{{ID: *page, Token: *token}}
	if *instagram != "" {
		accounts = append(accounts, metasim.Account{ID: *instagram, Instagram: true, Token: *token})
	}
	sim := metasim.New(metasim.Config{
		AppSecret: *secret, AppID: *appID, WebhookURL: *webhook, HumanAgent: *humanAgent, Accounts: accounts,
		RetryDelays: delays, GiveUpAfter: *giveUp, WebhookTimeout: *timeout, BaseURL: "http://" + *listen,
	})
	srv := &http.Server{Addr: *listen, Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "metasim:", err)
			os.Exit(1)
		}
	}()
	fmt.Printf("metasim: Graph API and /_sim/ on http://%s, webhooks to %s\n", *listen, *webhook)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	sim.Close()
}
