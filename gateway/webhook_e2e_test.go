package gateway_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// receiver is an integrator's endpoint: it checks every signature with
// its own HMAC computation, refuses while down or for the first posts,
// and keeps what it accepted.
type receiver struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	down   bool
	refuse int // posts still to refuse
	tried  []string
	got    []map[string]any
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, sig, ok := strings.Cut(r.Header.Get("Sealgate-Signature"), ",")
	mac := hmac.New(sha256.New, []byte(rc.secret))
	mac.Write([]byte(strings.TrimPrefix(ts, "t=") + "." + string(body)))
	want := "v1=" + hex.EncodeToString(mac.Sum(nil))
	unix, _ := strconv.ParseInt(strings.TrimPrefix(ts, "t="), 10, 64)
	if !ok || !hmac.Equal([]byte(sig), []byte(want)) || time.Since(time.Unix(unix, 0)) > time.Minute {
		rc.t.Errorf("bad signature %q on %s", r.Header.Get("Sealgate-Signature"), body)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev map[string]any
	if err := json.Unmarshal(body, &ev); err != nil {
		rc.t.Errorf("event is not JSON: %s", body)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.tried = append(rc.tried, fmt.Sprint(ev["id"]))
	if rc.down || rc.refuse > 0 {
		rc.refuse--
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	rc.got = append(rc.got, ev)
}

func (rc *receiver) wait(n int) []map[string]any {
	rc.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rc.mu.Lock()
		got := append([]map[string]any(nil), rc.got...)
		rc.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			rc.t.Fatalf("%d events received, want %d", len(got), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWebhooksSurviveFailuresAndARestart: an endpoint that fails its
// first posts, then is down across a gateway restart, still gets every
// event — once accepted, with the id it was first tried with, signed,
// and without message content.
func TestWebhooksSurviveFailuresAndARestart(t *testing.T) {
	rc := &receiver{t: t, secret: "wh-s3cret", refuse: 2}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	os.WriteFile(secretFile, []byte(rc.secret+"\n"), 0o600)
	e := newE2E(t, fmt.Sprintf("webhooks:\n  retry_initial: 50ms\n  retry_max: 200ms\n  endpoints:\n    - url: %s/hook\n      events: [delivered, bounced]\n      secret_file: %s\n",
		srv.URL, secretFile))
	e.destination("dest.test", "127.0.0.2", testutil.SinkOptions{TLS: true, CA: e.ca,
		RcptReply: func(rcpt string) *smtp.SMTPError {
			if strings.HasPrefix(rcpt, "nobody@") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}})
	id := e.send("", []string{"bob@dest.test", "nobody@dest.test"}, message("lab", "Haemoglobin 13.5"))
	e.waitState(id, "bob@dest.test", queue.StateDelivered)
	got := rc.wait(2)
	types := map[string]map[string]any{}
	for _, ev := range got {
		types[fmt.Sprint(ev["type"])] = ev
	}
	d, b := types["delivered"], types["bounced"]
	if d == nil || d["queue_id"] != id || d["recipient"] != "bob@dest.test" || d["tls_version"] != "TLS1.3" || d["cert_verified"] != true {
		t.Errorf("delivered event: %v", d)
	}
	if b == nil || b["recipient"] != "nobody@dest.test" || b["status"] != "5.1.1" {
		t.Errorf("bounced event: %v", b)
	}

	// Down across a restart: the event waits in the spool's outbox.
	rc.mu.Lock()
	rc.down = true
	rc.mu.Unlock()
	next := e.send("", []string{"carol@dest.test"}, message("later", "Haemoglobin 14.1"))
	e.waitState(next, "carol@dest.test", queue.StateDelivered)
	deadline := time.Now().Add(20 * time.Second)
	for {
		rc.mu.Lock()
		n := len(rc.tried)
		rc.mu.Unlock()
		if n >= 6 || time.Now().After(deadline) { // 2 refused + 2 taken + carol's tried while down
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cfg := e.gw.Config()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := e.gw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	rc.mu.Lock()
	rc.down = false
	firstTry := rc.tried[len(rc.tried)-1]
	rc.mu.Unlock()
	gw, err := gateway.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.Shutdown(ctx)
	})
	got = rc.wait(3)
	c := got[2]
	if c["type"] != "delivered" || c["recipient"] != "carol@dest.test" || c["queue_id"] != next || c["id"] != firstTry {
		t.Errorf("after the restart: %v (first tried as %s)", c, firstTry)
	}
	ids := map[any]bool{}
	for _, ev := range got {
		if ids[ev["id"]] {
			t.Errorf("event %v accepted twice", ev["id"])
		}
		ids[ev["id"]] = true
		for k, v := range ev {
			if strings.Contains(fmt.Sprint(v), "Haemoglobin") {
				t.Errorf("event field %s carries message content", k)
			}
		}
	}
}
