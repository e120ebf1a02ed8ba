package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway"
	"github.com/sealgate/sealgate/internal/testutil"
)

// lockedBuffer is a log destination the node's goroutines may write to
// while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// TestDKIMKeysAreLoggedAtStart: a starting node names each DKIM key it
// signs with (domain, selector, algorithm with the RSA size, file), so
// that an admin can hold them against the published records.
func TestDKIMKeysAreLoggedAtStart(t *testing.T) {
	dir := t.TempDir()
	keys := []struct{ domain, selector, algo, logged string }{
		{"org.test", "mail2026", "rsa", "rsa-2048"},
		{"other.test", "ed1", "ed25519", "ed25519"},
	}
	yaml := fmt.Sprintf("data_dir: %s\ninbound: {listen: 127.0.0.1:0}\nadmin: {listen: 127.0.0.1:0}\noutbound: {dns_resolver: %s}\ndkim:\n  keys:\n",
		filepath.Join(dir, "data"), testutil.NewDNSServer(t).Addr())
	files := map[string]string{}
	for _, k := range keys {
		_, pemKey, err := certs.GenerateDKIMKey(k.algo, 2048)
		if err != nil {
			t.Fatal(err)
		}
		files[k.selector] = filepath.Join(dir, k.selector+".pem")
		if err := certs.WriteDKIMKey(files[k.selector], pemKey); err != nil {
			t.Fatal(err)
		}
		yaml += fmt.Sprintf("    - {domain: %s, selector: %s, key_file: %s}\n", k.domain, k.selector, files[k.selector])
	}
	cfg, err := config.Parse("start.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	gw, err := gateway.New(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	// Stop only once the SMTP listener greets: a Shutdown that comes
	// before its goroutine serves does not close it.
	c, err := smtp.Dial(gw.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	loaded := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if line["msg"] == "DKIM key loaded" {
			loaded[fmt.Sprint(line["selector"])] = line
		}
	}
	for _, k := range keys {
		line := loaded[k.selector]
		if line == nil || line["domain"] != k.domain || line["algorithm"] != k.logged || line["file"] != files[k.selector] {
			t.Errorf("key %s/%s: logged %v, want domain, selector, algorithm %s and file", k.domain, k.selector, line, k.logged)
		}
	}
	if len(loaded) != len(keys) {
		t.Errorf("%d keys logged, want %d:\n%s", len(loaded), len(keys), logs.Bytes())
	}
}
