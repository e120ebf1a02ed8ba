package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/sealgate/sealgate/internal/testutil"
)

// moveToQuarantine moves the records of every message of the spool at
// from into the quarantine bucket of the spool at to, byte for byte, as
// an earlier version left records it could not read. It returns their IDs.
func moveToQuarantine(t *testing.T, from, to string) []string {
	t.Helper()
	type rec struct {
		id, kind string
		v        []byte
	}
	var recs []rec
	src, err := bolt.Open(from, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = src.Update(func(tx *bolt.Tx) error {
		for _, kind := range []string{"message", "body"} {
			b := tx.Bucket([]byte(map[string]string{"message": "messages", "body": "bodies"}[kind]))
			var keys [][]byte
			b.ForEach(func(k, v []byte) error {
				recs = append(recs, rec{string(k), kind, append([]byte(nil), v...)})
				keys = append(keys, append([]byte(nil), k...))
				return nil
			})
			for _, k := range keys {
				b.Delete(k)
			}
		}
		return nil
	})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	dst, err := bolt.Open(to, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	var ids []string
	err = dst.Update(func(tx *bolt.Tx) error {
		for _, r := range recs {
			if r.kind == "message" {
				ids = append(ids, r.id)
			}
			if err := tx.Bucket([]byte("quarantine")).Put([]byte(r.id+"/"+r.kind), r.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestQuarantineListAndRestoreOnStoppedSpool(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	seedSpool(t, data)
	spool := filepath.Join(data, "spool.db")
	id := moveToQuarantine(t, spool, spool)[0]
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, "data_dir: "+data+"\n")

	code, stdout, stderr := sealgate(t, "queue", "quarantine", "list", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, id) || !strings.Contains(stdout, "1 messages in quarantine") {
		t.Fatalf("quarantine list: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := sealgate(t, "queue", "quarantine", "restore", "--config", cfg); code != 2 || !strings.Contains(stderr, "--all") {
		t.Errorf("restore without IDs: exit %d: %s", code, stderr)
	}
	if code, stdout, stderr := sealgate(t, "queue", "quarantine", "restore", id, "--config", cfg); code != 0 || !strings.Contains(stdout, id+" restored") {
		t.Fatalf("quarantine restore: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = sealgate(t, "queue", "show", id, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "seeded@org.test") || !strings.Contains(stdout, "restored from quarantine") {
		t.Errorf("queue show after restore: exit %d\n%s", code, stdout)
	}
	if code, stdout, _ := sealgate(t, "queue", "quarantine", "list", "--config", cfg); code != 0 || !strings.Contains(stdout, "0 messages in quarantine") {
		t.Errorf("quarantine list after restore:\n%s", stdout)
	}
}

// Against a running server the same commands go through the admin API,
// and an earlier key given with --key-file travels with the request.
func TestQuarantineRestoreThroughRunningServer(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	data, other := filepath.Join(dir, "data"), filepath.Join(dir, "other")
	seedSpool(t, data)
	seedSpool(t, other) // sealed under another key: the "earlier" one
	spool := filepath.Join(data, "spool.db")
	id := moveToQuarantine(t, filepath.Join(other, "spool.db"), spool)[0]

	smtpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	cfg := filepath.Join(dir, "sealgate.yaml")
	writeFile(t, cfg, fmt.Sprintf("data_dir: %s\ninbound: {listen: %s}\nadmin: {listen: 127.0.0.1:%d}\n", data, smtpAddr, testutil.FreePort(t)))
	startServer(t, bin, cfg, smtpAddr)

	code, stdout, stderr := sealgate(t, "queue", "quarantine", "list", "--json", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, `"id": "`+id+`"`) {
		t.Fatalf("quarantine list through the server: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = sealgate(t, "queue", "quarantine", "restore", "--all", "--config", cfg)
	if code != 1 || !strings.Contains(stdout, id+" not restored") {
		t.Errorf("restore without the earlier key: exit %d\n%s", code, stdout)
	}
	code, stdout, stderr = sealgate(t, "queue", "quarantine", "restore", "--all", "--key-file", filepath.Join(other, "spool.key"), "--config", cfg)
	if code != 0 || !strings.Contains(stdout, id+" restored") {
		t.Fatalf("restore with the earlier key: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, _ = sealgate(t, "queue", "show", id, "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "restored from quarantine") {
		t.Errorf("queue show through the server: exit %d\n%s", code, stdout)
	}
}
