package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/gateway/admin"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// TestMetricsMoveAsTheRunDid: after one message delivered over verified
// TLS and one refused by the destination, /metrics (behind the admin
// token) counts exactly that.
func TestMetricsMoveAsTheRunDid(t *testing.T) {
	e := newE2E(t, "")
	e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca,
		RcptReply: func(rcpt string) *smtp.SMTPError {
			if strings.HasPrefix(rcpt, "nobody@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}})
	ok := e.send("", []string{"bob@dest.test"}, message("one", "x"))
	bad := e.send("", []string{"nobody@dest.test"}, message("two", "x"))
	e.waitState(ok, "bob@dest.test", queue.StateDelivered)
	e.waitState(bad, "nobody@dest.test", queue.StateBounced)

	tok, err := admin.ReadToken(e.gw.Config().AdminTokenFile())
	if err != nil {
		t.Fatal(err)
	}
	scrape := func(token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+e.gw.AdminAddr()+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := scrape(""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d", code)
	}
	code, body := scrape(tok)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		"sealgate_messages_received_total 2\n",
		`sealgate_recipient_outcomes_total{method="tls",outcome="delivered"} 1` + "\n",
		`sealgate_recipient_outcomes_total{method="tls",outcome="bounced"} 1` + "\n",
		`sealgate_delivery_sessions_total{tls_version="TLS1.3",verified="true"} 2` + "\n",
		"sealgate_delivery_latency_seconds_count 1\n",
		`sealgate_policy_decisions_total{method="tls",rule="none"} 2` + "\n",
		"sealgate_queue_messages 0\n",
		"sealgate_queue_oldest_message_age_seconds 0\n",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
}
