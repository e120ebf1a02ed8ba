package gateway_test

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/sealgate/sealgate/queue"
)

// TestEscrowInAnObjectStore: with escrow.object_store, an escrowed
// message's content goes to the S3-compatible bucket (served on loopback
// by gofakes3), sealed — the bucket holds no readable byte of it — the
// recipient reads it in the portal as ever, and a revocation deletes the
// object.
func TestEscrowInAnObjectStore(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("sealgate-escrow"); err != nil {
		t.Fatal(err)
	}
	s3 := httptest.NewServer(gofakes3.New(backend).Server())
	defer s3.Close()
	dir := t.TempDir()
	ak, sk := filepath.Join(dir, "ak"), filepath.Join(dir, "sk")
	os.WriteFile(ak, []byte("AKIDEXAMPLE\n"), 0o600)
	os.WriteFile(sk, []byte("wJalrXUtnFEMI/K7MDENG\n"), 0o600)
	x := newEscrowE2E(t, fmt.Sprintf(`escrow:
  object_store:
    endpoint: %s
    bucket: sealgate-escrow
    region: us-east-1
    prefix: escrow/
    access_key_file: %s
    secret_key_file: %s
    insecure: true
`, strings.TrimPrefix(s3.URL, "http://"), ak, sk))

	id := x.send("alice@org.test", []string{"bob@dest.test"}, message("[secure] Lab results", "Your ferritin is 41."))
	x.waitState(id, "bob@dest.test", queue.StateDelivered)
	link, _ := x.noticeLink(t, "bob@dest.test")

	list, err := backend.ListBucket("sealgate-escrow", nil, gofakes3.ListBucketPage{})
	if err != nil || len(list.Contents) != 1 || !strings.HasPrefix(list.Contents[0].Key, "escrow/") {
		t.Fatalf("the bucket holds %+v (%v), want one object under escrow/", list, err)
	}
	obj, err := backend.GetObject("sealgate-escrow", list.Contents[0].Key, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stored bytes.Buffer
	stored.ReadFrom(obj.Contents)
	obj.Contents.Close()
	for _, secret := range []string{"ferritin", "Lab results", "bob@dest.test"} {
		if bytes.Contains(stored.Bytes(), []byte(secret)) {
			t.Errorf("the object holds %q in clear", secret)
		}
	}

	c := browser(t)
	_, page := get(t, c, link)
	post(t, c, link+"/code", url.Values{"csrf": {csrfOf(t, page)}})
	code := x.codeFor(t, "bob@dest.test", 1)
	_, page = get(t, c, link)
	if _, page = post(t, c, link+"/verify", url.Values{"csrf": {csrfOf(t, page)}, "code": {code}}); !strings.Contains(page, "Your ferritin is 41.") {
		t.Fatalf("the portal does not show the content from the object store:\n%s", page)
	}

	recs, err := x.admin().Escrow().ForQueueID(id)
	if err != nil || len(recs) != 1 {
		t.Fatalf("escrow records: %+v, %v", recs, err)
	}
	if _, err := x.admin().Escrow().Revoke(recs[0].MessageID, ""); err != nil {
		t.Fatal(err)
	}
	if list, _ := backend.ListBucket("sealgate-escrow", nil, gofakes3.ListBucketPage{}); len(list.Contents) != 0 {
		t.Errorf("the revoked message's object is still in the bucket: %+v", list.Contents)
	}
}
