package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sealgate/sealgate/queue"
)

// openStore opens a spool in a temporary directory and checks its
// consistency when the test ends.
func openStore(t *testing.T) *queue.Store {
	t.Helper()
	return openStoreWith(t, queue.Options{})
}

// openStoreWith is openStore with o's options (its path and key file
// are the test's).
func openStoreWith(t *testing.T, o queue.Options) *queue.Store {
	t.Helper()
	dir := t.TempDir()
	o.Path, o.KeyFile = filepath.Join(dir, "s.db"), filepath.Join(dir, "k")
	s, err := queue.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Errorf("spool check: %v", err)
		}
		s.Close()
	})
	return s
}

// wakes records the IDs the API hands to the scheduler.
type wakes struct {
	mu  sync.Mutex
	ids []string
}

func (w *wakes) wake(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ids = append(w.ids, id)
}

func (w *wakes) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ids)
}

// serve starts the API on a loopback listener; withPprof as for Handler.
// testToken is the bearer token the test servers want unless told otherwise.
const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func serve(t *testing.T, o Options, withPprof bool) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	if o.Token == "" {
		o.Token = testToken
	}
	o.Hosts = AllowedHosts(srv.Listener.Addr().String())
	srv.Config.Handler = New(o).Handler(withPprof)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// do sends one request to srv and returns the status and body.
func do(t *testing.T, srv *httptest.Server, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func enqueue(t *testing.T, s *queue.Store, from string, rcpts ...string) string {
	t.Helper()
	id, err := s.Enqueue(context.Background(), queue.Envelope{From: from, Recipients: rcpts}, []byte("Subject: hi\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func lastEvent(m *queue.Message) string {
	if len(m.Events) == 0 {
		return ""
	}
	return m.Events[len(m.Events)-1].Kind
}

func TestQueueOperationsThroughClient(t *testing.T) {
	s := openStore(t)
	var w wakes
	srv := serve(t, Options{Store: s, Wake: w.wake}, false)
	c := NewAdminClient(srv.Listener.Addr().String(), testToken)

	id := enqueue(t, s, "alice@org.test", "bob@dest.test", "carol@dest.test")

	// list: the one message, with its envelope
	msgs, err := c.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(msgs) != 1 || msgs[0].ID != id || msgs[0].Envelope.From != "alice@org.test" {
		t.Fatalf("List = %+v, want the one message %s from alice@org.test", msgs, id)
	}

	// show: envelope and recipients come back
	m, err := c.Get(id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	if m.ID != id || m.Envelope.From != "alice@org.test" ||
		!slices.Equal(m.Envelope.Recipients, []string{"bob@dest.test", "carol@dest.test"}) {
		t.Errorf("Get envelope = %s %+v", m.ID, m.Envelope)
	}
	var rcpts []string
	for _, r := range m.Recipients {
		rcpts = append(rcpts, r.Address+"="+string(r.State))
	}
	if want := []string{"bob@dest.test=queued", "carol@dest.test=queued"}; !slices.Equal(rcpts, want) {
		t.Errorf("Get recipients = %v, want %v", rcpts, want)
	}
	if m.Held {
		t.Error("a new message is held")
	}

	// hold: held, and the scheduler is not woken
	if err := c.Hold(id); err != nil {
		t.Fatalf("Hold: %v", err)
	}
	if m, err := c.Get(id); err != nil || !m.Held || lastEvent(m) != "held" {
		t.Errorf("after Hold: Get = %+v, %v; want held with a held event", m, err)
	}
	if got := w.got(); len(got) != 0 {
		t.Errorf("Hold woke the scheduler for %v", got)
	}

	// release: not held, and the scheduler is woken for it
	if err := c.Release(id); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if m, err := c.Get(id); err != nil || m.Held || lastEvent(m) != "released" {
		t.Errorf("after Release: Get = %+v, %v; want not held with a released event", m, err)
	}
	if got, want := w.got(), []string{id}; !slices.Equal(got, want) {
		t.Errorf("after Release woken %v, want %v", got, want)
	}

	// retry: the scheduler is woken for it again
	if err := c.Retry(id); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	if m, err := c.Get(id); err != nil || lastEvent(m) != "retry" {
		t.Errorf("after Retry: Get = %+v, %v; want a retry event", m, err)
	}
	if got, want := w.got(), []string{id, id}; !slices.Equal(got, want) {
		t.Errorf("after Retry woken %v, want %v", got, want)
	}

	// retry all: one message touched, woken once more
	if n, err := c.RetryAll(); err != nil || n != 1 {
		t.Errorf("RetryAll = %d, %v; want 1", n, err)
	}
	if got, want := w.got(), []string{id, id, id}; !slices.Equal(got, want) {
		t.Errorf("after RetryAll woken %v, want %v", got, want)
	}

	// delete: gone
	if err := c.Delete(id); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if m, err := c.Get(id); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get after Delete = %+v, %v; want ErrNotFound", m, err)
	}
	if msgs, err := c.List(); err != nil || len(msgs) != 0 {
		t.Errorf("List after Delete = %+v, %v; want none", msgs, err)
	}

	// unknown IDs: ErrNotFound, and nobody is woken
	const unknown = "00000000000000deadbeef"
	if m, err := c.Get(unknown); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("Get(unknown) = %+v, %v; want ErrNotFound", m, err)
	}
	for name, op := range map[string]func(string) error{
		"Hold": c.Hold, "Release": c.Release, "Retry": c.Retry, "Delete": c.Delete,
	} {
		if err := op(unknown); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("%s(unknown) = %v; want ErrNotFound", name, err)
		}
	}
	if got := w.got(); len(got) != 3 {
		t.Errorf("operations on an unknown ID woke the scheduler: %v", got)
	}
}

func TestRetryAllLeavesHeldMessagesAlone(t *testing.T) {
	s := openStore(t)
	var w wakes
	srv := serve(t, Options{Store: s, Wake: w.wake}, false)
	c := NewAdminClient(srv.Listener.Addr().String(), testToken)

	pending := enqueue(t, s, "alice@org.test", "bob@dest.test")
	held := enqueue(t, s, "alice@org.test", "carol@dest.test")
	if err := c.Hold(held); err != nil {
		t.Fatalf("Hold: %v", err)
	}

	if _, err := c.RetryAll(); err != nil {
		t.Fatalf("RetryAll: %v", err)
	}
	if got, want := w.got(), []string{pending}; !slices.Equal(got, want) {
		t.Errorf("RetryAll woke %v, want only the pending message %v", got, want)
	}
	if m, err := c.Get(held); err != nil || !m.Held {
		t.Errorf("after RetryAll the held message is %+v, %v; want still held", m, err)
	}
}

func TestDomainsThroughClient(t *testing.T) {
	s := openStore(t)
	srv := serve(t, Options{Store: s}, false)
	c := NewAdminClient(srv.Listener.Addr().String(), testToken)

	if ds, err := c.Domains(); err != nil || len(ds) != 0 {
		t.Fatalf("Domains of an empty spool = %+v, %v", ds, err)
	}
	err := s.ObserveTLS(queue.TLSObservation{Domain: "Dest.Test", Connected: true, TLSVersion: "TLS1.3", Verified: true})
	if err != nil {
		t.Fatal(err)
	}

	ds, err := c.Domains()
	if err != nil {
		t.Fatalf("Domains: %v", err)
	}
	if len(ds) != 1 || ds[0].Domain != "dest.test" || !ds[0].TLSSeen || !ds[0].Verified ||
		!slices.Equal(ds[0].TLSVersions, []string{"TLS1.3"}) {
		t.Fatalf("Domains = %+v, want dest.test seen with verified TLS1.3", ds)
	}

	if err := c.ResetDomain("dest.test"); err != nil {
		t.Fatalf("ResetDomain: %v", err)
	}
	if ds, err := c.Domains(); err != nil || len(ds) != 0 {
		t.Errorf("Domains after reset = %+v, %v; want none", ds, err)
	}
	if err := c.ResetDomain("dest.test"); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("second ResetDomain = %v; want ErrNotFound", err)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	s := openStore(t)
	var ready atomic.Bool
	srv := serve(t, Options{Store: s, Ready: ready.Load}, false)
	enqueue(t, s, "alice@org.test", "bob@dest.test", "carol@dest.test")

	if code, body := do(t, srv, "GET", "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q; want 200 ok", code, body)
	}

	// starting: not ready
	if code, body := do(t, srv, "GET", "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz while not ready = %d %q; want 503", code, body)
	}

	// serving: ready, with the spool's counters
	ready.Store(true)
	code, body := do(t, srv, "GET", "/readyz")
	if code != http.StatusOK {
		t.Fatalf("GET /readyz when ready = %d %q; want 200", code, body)
	}
	var got struct {
		Status string
		Spool  queue.Counts
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("GET /readyz body %q: %v", body, err)
	}
	if got.Status != "ready" || got.Spool.Messages != 1 || got.Spool.Unfinished != 1 {
		t.Errorf("GET /readyz = %s; want ready with 1 unfinished message", body)
	}
	code, body = do(t, srv, "GET", "/api/v1/stats")
	var st queue.Stats
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil ||
		st.Messages != 1 || st.Held != 0 || st.Recipients[queue.StateQueued] != 2 {
		t.Errorf("GET /api/v1/stats = %d %s; want 1 message, 2 queued recipients", code, body)
	}

	// draining: not ready again
	ready.Store(false)
	if code, body := do(t, srv, "GET", "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz while draining = %d %q; want 503", code, body)
	}
}

func TestPolicyReload(t *testing.T) {
	var (
		mu        sync.Mutex
		reloadErr error
		calls     int
	)
	reload := func() error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return reloadErr
	}
	srv := serve(t, Options{Store: openStore(t), ReloadPolicy: reload}, false)

	// a broken rules file: refused, and the admin is told where
	problem := `t.yaml:12: policy.rules[0].action: unknown chain method "tsl"`
	mu.Lock()
	reloadErr = errors.New(problem)
	mu.Unlock()
	code, body := do(t, srv, "POST", "/api/v1/policy/reload")
	if code < 400 {
		t.Errorf("reload with a bad config = %d %q; want an error status", code, body)
	}
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != problem {
		t.Errorf("reload with a bad config: body %q (%v); want error %q", body, err, problem)
	}

	// fixed: reloaded
	mu.Lock()
	reloadErr = nil
	mu.Unlock()
	if code, body := do(t, srv, "POST", "/api/v1/policy/reload"); code/100 != 2 {
		t.Errorf("reload with a good config = %d %q; want 2xx", code, body)
	}

	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("ReloadPolicy called %d times, want 2", calls)
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	s := openStore(t)
	if code, _ := do(t, serve(t, Options{Store: s}, false), "GET", "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ with Handler(false) = %d; want 404", code)
	}
	code, body := do(t, serve(t, Options{Store: s}, true), "GET", "/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/ with Handler(true) = %d; want 200 with the profile index", code)
	}
}

// TestRefusalsThroughClient: the refusals of the spool (retry of a held
// message, hold of a finished one, an ambiguous prefix) come back through
// the admin API as the same errors, with the same words, and wake
// nothing; a unique prefix names a message on every route.
func TestRefusalsThroughClient(t *testing.T) {
	s := openStore(t)
	var w wakes
	srv := serve(t, Options{Store: s, Wake: w.wake}, false)
	c := NewAdminClient(srv.Listener.Addr().String(), testToken)

	held := enqueue(t, s, "alice@org.test", "bob@dest.test")
	done := enqueue(t, s, "alice@org.test", "carol@dest.test")
	if err := s.Hold(held); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RecordAttempt(done, queue.Attempt{Destination: "dest.test", Recipients: []string{"carol@dest.test"}},
		[]queue.RcptOutcome{{Address: "carol@dest.test", Delivered: true}}, nil); err != nil {
		t.Fatal(err)
	}

	err := c.Retry(held)
	if !errors.Is(err, queue.ErrHeld) || !strings.Contains(err.Error(), "held (by admin)") {
		t.Errorf("Retry(held) = %v; want ErrHeld saying who held it", err)
	}
	if err := c.Hold(done); !errors.Is(err, queue.ErrFinished) {
		t.Errorf("Hold(finished) = %v; want ErrFinished", err)
	}
	if err := c.Retry(done); !errors.Is(err, queue.ErrFinished) {
		t.Errorf("Retry(finished) = %v; want ErrFinished", err)
	}
	if got := w.got(); len(got) != 0 {
		t.Errorf("refused operations woke the scheduler for %v", got)
	}

	common := 0
	for common < len(held) && held[common] == done[common] {
		common++
	}
	if _, err := c.Resolve(held[:common]); !errors.Is(err, queue.ErrAmbiguous) {
		t.Errorf("Resolve(%q) = %v; want ErrAmbiguous", held[:common], err)
	}
	if id, err := c.Resolve(held[:common+1]); err != nil || id != held {
		t.Errorf("Resolve(%q) = %q, %v; want %s", held[:common+1], id, err, held)
	}
	if err := c.Release(held[:common+1]); err != nil {
		t.Fatalf("Release by prefix: %v", err)
	}
	if m, err := s.Get(held); err != nil || m.Held {
		t.Errorf("after release by prefix: %+v, %v", m, err)
	}
	if got, want := w.got(), []string{held}; !slices.Equal(got, want) {
		t.Errorf("release by prefix woke %v, want %v (the whole ID)", got, want)
	}
}

// TestQueueListByStateThroughTheAPI: ?state= filters on the server, a
// page at a time, and an unknown state is 400.
func TestQueueListByStateThroughTheAPI(t *testing.T) {
	s := openStore(t)
	srv := serve(t, Options{Store: s}, false)
	var held []string
	for i := range 5 {
		id := enqueue(t, s, "a@org.test", "b@dest.test")
		if i%2 == 0 {
			s.Hold(id)
			held = append(held, id)
		}
	}
	code, body := do(t, srv, "GET", "/api/v1/queue?state=held&limit=2")
	var msgs []queue.Message
	if err := json.Unmarshal([]byte(body), &msgs); code != 200 || err != nil || len(msgs) != 2 || msgs[0].ID != held[0] || msgs[1].ID != held[1] {
		t.Fatalf("held, first page: %d %s", code, body)
	}
	if code, _ := do(t, srv, "GET", "/api/v1/queue?state=stuck"); code != 400 {
		t.Errorf("unknown state: %d", code)
	}
}

// TestQueueWalkThroughEveryPage: following Next-After from the first
// page of GET /api/v1/queue?limit=2 to the end sees every message once,
// with a state filter too.
func TestQueueWalkThroughEveryPage(t *testing.T) {
	s := openStore(t)
	srv := serve(t, Options{Store: s}, false)
	all, held := map[string]bool{}, map[string]bool{}
	for i := range 7 {
		id := enqueue(t, s, "a@org.test", "b@dest.test")
		all[id] = true
		if i%2 == 1 {
			if err := s.Hold(id); err != nil {
				t.Fatal(err)
			}
			held[id] = true
		}
	}
	page := func(query string) ([]queue.Message, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/queue?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var msgs []queue.Message
		if err := json.NewDecoder(resp.Body).Decode(&msgs); resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET /api/v1/queue?%s: %d %v", query, resp.StatusCode, err)
		}
		if _, ok := resp.Header["Next-After"]; !ok {
			t.Fatalf("GET /api/v1/queue?%s: no Next-After header", query)
		}
		return msgs, resp.Header.Get("Next-After")
	}
	for filter, want := range map[string]map[string]bool{"": all, "&state=held": held} {
		seen := map[string]int{}
		after, ended := "", false
		for range len(all) + 1 { // bounded: more pages than messages is a walk that does not end
			msgs, next := page("limit=2" + filter + "&after=" + after)
			if len(msgs) > 2 {
				t.Errorf("filter %q: a page of %d", filter, len(msgs))
			}
			for _, m := range msgs {
				seen[m.ID]++
			}
			if next == "" {
				ended = true
				break
			}
			after = next
		}
		if !ended {
			t.Errorf("filter %q: Next-After still not empty after %d pages", filter, len(all)+1)
		}
		for id := range want {
			if seen[id] != 1 {
				t.Errorf("filter %q: message %s seen %d times", filter, id, seen[id])
			}
		}
		if len(seen) != len(want) {
			t.Errorf("filter %q: %d messages seen, want %d", filter, len(seen), len(want))
		}
	}
}
