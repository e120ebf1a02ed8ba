package queue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func openEscrowTest(t *testing.T, clock *testClock) (*Store, *Escrow, string) {
	t.Helper()
	dir := t.TempDir()
	s := openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key"), Now: clock.Now})
	keyFile := filepath.Join(dir, "escrow.key")
	e, err := s.OpenEscrow(EscrowOptions{KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	return s, e, keyFile
}

func TestEscrowDepositHoldsNoPlaintextAndOpensByTokenOnly(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	s, e, keyFile := openEscrowTest(t, clock)
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("escrow key: %v %v", fi, err)
	}
	const marker = "MARKER-haemoglobin-13.2"
	body := []byte("From: alice@org.test\r\nSubject: " + marker + "\r\n\r\n" + marker + "\r\n")
	id1, tok1, err := e.Deposit(EscrowDeposit{QueueID: "q1", Sender: "Alice <alice@org.test>", Recipient: "bob@dest.test"}, body)
	if err != nil {
		t.Fatal(err)
	}
	id2, tok2, err := e.Deposit(EscrowDeposit{QueueID: "q1", Recipient: "carol@dest.test"}, body)
	if err != nil {
		t.Fatal(err)
	}
	if id1 == id2 || tok1 == tok2 || len(tok1) < 43 {
		t.Fatalf("ids %s %s tokens %q %q", id1, id2, tok1, tok2)
	}
	got, err := e.Content(tok2)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("content by token: %q %v", got, err)
	}
	en, err := e.Lookup(tok1)
	if err != nil || en.Recipient.Address != "bob@dest.test" || len(en.Message.Recipients) != 2 {
		t.Fatalf("lookup: %+v %v", en, err)
	}
	if _, err := e.Lookup(tok1 + "x"); !errors.Is(err, ErrEscrowGone) {
		t.Errorf("unknown token: %v", err)
	}
	s.Close()
	file, err := os.ReadFile(filepath.Join(filepath.Dir(keyFile), "spool.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{marker, tok1, tok2, "bob@dest.test", "alice@org.test"} {
		if bytes.Contains(file, []byte(secret)) {
			t.Errorf("the store file holds %q in clear", secret)
		}
	}
}

func TestEscrowKeyMissingOrWrongIsRefused(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "escrow.key")
	e, err := s.OpenEscrow(EscrowOptions{KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Deposit(EscrowDeposit{QueueID: "q", Recipient: "b@d.test"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	os.Rename(keyFile, keyFile+".bak")
	s, err = Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.OpenEscrow(EscrowOptions{KeyFile: keyFile}); !errors.Is(err, ErrEscrowKeyMissing) || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("missing key: %v", err)
	}
	if _, err := os.Stat(keyFile); err == nil {
		t.Error("a new escrow key was created for a store that holds messages")
	}
	other := filepath.Join(dir, "other.key")
	os.WriteFile(other, bytes.Repeat([]byte{7}, 32), 0o600)
	if _, err := s.OpenEscrow(EscrowOptions{KeyFile: other}); !errors.Is(err, ErrEscrowKeyWrong) {
		t.Errorf("wrong key: %v", err)
	}
	os.Rename(keyFile+".bak", keyFile)
	if _, err := s.OpenEscrow(EscrowOptions{KeyFile: keyFile}); err != nil {
		t.Errorf("the right key: %v", err)
	}
}

func TestEscrowCodeSingleUseTriesAndRate(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	_, e, _ := openEscrowTest(t, clock)
	_, tok, err := e.Deposit(EscrowDeposit{QueueID: "q", Recipient: "bob@dest.test"}, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CheckCode(tok, "12345678", "192.0.2.1"); !errors.Is(err, ErrEscrowCodeVoid) {
		t.Errorf("a code before any was sent: %v", err)
	}
	code, addr, err := e.IssueCode(tok, "192.0.2.1")
	if err != nil || addr != "bob@dest.test" || len(code) != CodeDigits {
		t.Fatalf("issue: %q %q %v", code, addr, err)
	}
	if left, err := e.CheckCode(tok, wrongCode(code), "192.0.2.1"); !errors.Is(err, ErrEscrowCodeWrong) || left != 4 {
		t.Errorf("wrong code: %d %v", left, err)
	}
	if _, err := e.CheckCode(tok, code, "192.0.2.1"); err != nil {
		t.Errorf("right code: %v", err)
	}
	if _, err := e.CheckCode(tok, code, "192.0.2.1"); !errors.Is(err, ErrEscrowCodeVoid) {
		t.Errorf("a code used twice: %v", err)
	}

	// Five wrong tries void the code, the right one included afterwards.
	code, _, _ = e.IssueCode(tok, "192.0.2.1")
	for i := range 5 {
		_, err := e.CheckCode(tok, wrongCode(code), "192.0.2.1")
		if want := ErrEscrowCodeWrong; i == 4 {
			if !errors.Is(err, ErrEscrowCodeVoid) {
				t.Errorf("fifth wrong try: %v", err)
			}
		} else if !errors.Is(err, want) {
			t.Errorf("wrong try %d: %v", i+1, err)
		}
	}
	if _, err := e.CheckCode(tok, code, "192.0.2.1"); !errors.Is(err, ErrEscrowCodeVoid) {
		t.Errorf("the right code after lockout: %v", err)
	}

	// Expiry of a code.
	code, _, _ = e.IssueCode(tok, "192.0.2.1")
	clock.Add(10*time.Minute + time.Second)
	if _, err := e.CheckCode(tok, code, "192.0.2.1"); !errors.Is(err, ErrEscrowCodeVoid) {
		t.Errorf("an expired code: %v", err)
	}
	// Rate: five codes an hour (three sent above).
	for range 2 {
		if _, _, err := e.IssueCode(tok, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.IssueCode(tok, "192.0.2.1"); !errors.Is(err, ErrEscrowRateLimited) {
		t.Errorf("sixth code in an hour: %v", err)
	}
	clock.Add(time.Hour)
	if _, _, err := e.IssueCode(tok, "192.0.2.1"); err != nil {
		t.Errorf("a code an hour later: %v", err)
	}

	en, _ := e.Lookup(tok)
	var kinds []string
	for _, ev := range en.Recipient.Events {
		kinds = append(kinds, ev.Kind)
		if ev.Kind != EscrowLinkIssued && ev.Client != "192.0.2.1" {
			t.Errorf("event without the client address: %+v", ev)
		}
	}
	for _, want := range []string{EscrowLinkIssued, EscrowCodeSent, EscrowCodeFailed, EscrowOpened, EscrowLocked} {
		if !strings.Contains(strings.Join(kinds, ","), want) {
			t.Errorf("events %v lack %q", kinds, want)
		}
	}
}

func wrongCode(code string) string {
	if code[0] == '9' {
		return "0" + code[1:]
	}
	return string(code[0]+1) + code[1:]
}

func TestEscrowExpiryAndRevocationDestroyContent(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	_, e, _ := openEscrowTest(t, clock)
	_, expiring, _ := e.Deposit(EscrowDeposit{QueueID: "q1", Recipient: "bob@dest.test"}, []byte("one"))
	clock.Add(29 * 24 * time.Hour)
	revID, revoked, _ := e.Deposit(EscrowDeposit{QueueID: "q2", Recipient: "bob@dest.test"}, []byte("two"))
	_, other, _ := e.Deposit(EscrowDeposit{QueueID: "q2", Recipient: "carol@dest.test"}, []byte("two"))

	// One recipient's access revoked: the other still reads.
	if err := e.Revoke(revID, "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Content(revoked); !errors.Is(err, ErrEscrowGone) {
		t.Errorf("revoked recipient: %v", err)
	}
	if _, err := e.Content(other); err != nil {
		t.Errorf("the other recipient after one was revoked: %v", err)
	}

	clock.Add(24 * time.Hour)
	if _, err := e.Content(expiring); !errors.Is(err, ErrEscrowGone) {
		t.Errorf("expired before the sweep: %v", err)
	}
	if n, err := e.Sweep(); n != 1 || err != nil {
		t.Errorf("sweep: %d %v", n, err)
	}
	msgID, _, _ := strings.Cut(revID, ".")
	if err := e.Revoke(msgID, "alice@org.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Content(other); !errors.Is(err, ErrEscrowGone) {
		t.Errorf("revoked message: %v", err)
	}
	all, err := e.List()
	if err != nil || len(all) != 3 {
		t.Fatalf("list: %d %v", len(all), err)
	}
	states := map[string]string{}
	for _, en := range all {
		states[en.Recipient.Address+" "+en.Message.QueueID] = en.Message.State(clock.Now())
		if en.Message.WrappedKey != nil {
			t.Errorf("%s: the key of a destroyed message is kept", en.Recipient.ID)
		}
		last := en.Recipient.Events[len(en.Recipient.Events)-1]
		if last.Kind != EscrowExpired && last.Kind != EscrowRevoked {
			t.Errorf("%s: last event %+v", en.Recipient.ID, last)
		}
	}
	if states["bob@dest.test q1"] != "expired" || states["carol@dest.test q2"] != "revoked" {
		t.Errorf("states %v", states)
	}
}

// memObjects is an object store in memory.
type memObjects struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (o *memObjects) PutObject(_ context.Context, name string, data []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m[name] = bytes.Clone(data)
	return nil
}

func (o *memObjects) GetObject(_ context.Context, name string) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	d, ok := o.m[name]
	if !ok {
		return nil, errors.New("no such object")
	}
	return d, nil
}

func (o *memObjects) DeleteObject(_ context.Context, name string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, name)
	return nil
}

// TestEscrowContentInAnObjectStore: with an object store, a message's
// content goes there, sealed (once for all its recipients), the spool
// holds only a reference, the portal's read finds it, and revoking the
// message removes the object.
func TestEscrowContentInAnObjectStore(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	objects := &memObjects{m: map[string][]byte{}}
	e, err := s.OpenEscrow(EscrowOptions{KeyFile: filepath.Join(dir, "escrow.key"), Objects: objects})
	if err != nil {
		t.Fatal(err)
	}
	const marker = "MARKER-ferritin-41"
	body := []byte("Subject: " + marker + "\r\n\r\n" + strings.Repeat(marker+"\r\n", 1000))
	_, tok, err := e.Deposit(EscrowDeposit{QueueID: "q1", Recipient: "bob@dest.test"}, body)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Deposit(EscrowDeposit{QueueID: "q1", Recipient: "carol@dest.test"}, body); err != nil {
		t.Fatal(err)
	}
	if len(objects.m) != 1 {
		t.Fatalf("%d objects for one message, want 1", len(objects.m))
	}
	for name, data := range objects.m {
		if bytes.Contains(data, []byte(marker)) || len(data) < len(body) {
			t.Errorf("object %s is not the sealed content (%d bytes)", name, len(data))
		}
	}
	s.Close()
	raw, _ := os.ReadFile(filepath.Join(dir, "spool.db"))
	if bytes.Contains(raw, []byte(marker)) {
		t.Error("the spool holds the content in clear")
	}
	s = openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	if e, err = s.OpenEscrow(EscrowOptions{KeyFile: filepath.Join(dir, "escrow.key"), Objects: objects}); err != nil {
		t.Fatal(err)
	}
	got, err := e.Content(tok)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("content through the object store: %d bytes, %v", len(got), err)
	}
	en, _ := e.Lookup(tok)
	if err := e.Revoke(en.Message.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	if len(objects.m) != 0 {
		t.Errorf("the revoked message's object is still there")
	}
}

// blockingObjects holds every upload until released.
type blockingObjects struct {
	memObjects
	started, release chan struct{}
}

func (o *blockingObjects) PutObject(ctx context.Context, name string, data []byte) error {
	close(o.started)
	<-o.release
	return o.memObjects.PutObject(ctx, name, data)
}

// TestObjectUploadDoesNotHoldTheSpool: while a deposit's content is on
// its way to the object store, the spool commits other changes (mail
// keeps flowing); the deposit completes once the upload does.
func TestObjectUploadDoesNotHoldTheSpool(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, Options{Path: filepath.Join(dir, "spool.db"), KeyFile: filepath.Join(dir, "spool.key")})
	objects := &blockingObjects{memObjects: memObjects{m: map[string][]byte{}}, started: make(chan struct{}), release: make(chan struct{})}
	e, err := s.OpenEscrow(EscrowOptions{KeyFile: filepath.Join(dir, "escrow.key"), Objects: objects})
	if err != nil {
		t.Fatal(err)
	}
	deposited := make(chan error, 1)
	go func() {
		_, _, err := e.Deposit(EscrowDeposit{QueueID: "q1", Recipient: "bob@dest.test"}, []byte("Subject: s\r\n\r\nbody\r\n"))
		deposited <- err
	}()
	<-objects.started
	committed := make(chan error, 1)
	go func() {
		_, err := s.Enqueue(context.Background(), Envelope{From: "a@org.test", Recipients: []string{"c@dest.test"}}, []byte("Subject: t\r\n\r\nx\r\n"))
		committed <- err
	}()
	select {
	case err := <-committed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(objects.release)
		t.Fatal("the spool took no mail while an escrow upload was on its way")
	}
	close(objects.release)
	if err := <-deposited; err != nil || len(objects.m) != 1 {
		t.Fatalf("deposit after the upload: %v, %d objects", err, len(objects.m))
	}
}
