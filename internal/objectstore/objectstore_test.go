package objectstore

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// newS3 serves an S3-compatible API on loopback (gofakes3) with one
// bucket and returns a Store on it.
func newS3(t *testing.T) (*Store, *s3mem.Backend) {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("escrow"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	s, err := New(Options{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: "escrow", Prefix: "msgs/",
		AccessKey: "AK", SecretKey: "SK", Insecure: true, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return s, backend
}

// TestObjectsRoundTrip: what is put reads back byte for byte under the
// prefix, a missing object is ErrNotFound, a deleted one is gone, and a
// missing bucket is said.
func TestObjectsRoundTrip(t *testing.T) {
	s, backend := newS3(t)
	ctx := context.Background()
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	data := []byte(strings.Repeat("sealed bytes ", 100000))
	if err := s.PutObject(ctx, "m1", data); err != nil {
		t.Fatal(err)
	}
	if obj, err := backend.HeadObject("escrow", "msgs/m1"); err != nil || obj.Size != int64(len(data)) {
		t.Fatalf("the object in the bucket: %+v, %v", obj, err)
	}
	got, err := s.GetObject(ctx, "m1")
	if err != nil || string(got) != string(data) {
		t.Fatalf("read back %d bytes, %v", len(got), err)
	}
	if _, err := s.GetObject(ctx, "m2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a missing object: %v, want ErrNotFound", err)
	}
	if err := s.DeleteObject(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetObject(ctx, "m1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted object: %v, want ErrNotFound", err)
	}
	other := *s
	other.bucket = "nope"
	if err := other.Check(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("a missing bucket: %v", err)
	}
}
