// Package objectstore keeps escrowed message contents in an
// S3-compatible object store (escrow.object_store), through minio-go:
// Amazon S3, MinIO, Ceph, Wasabi and the like. It stores what it is
// given — contents the escrow has already sealed under each message's
// own key — so the object store sees only ciphertext, under names that
// are escrow message IDs. It does no sealing and no access control of
// its own: the escrow store decides who reads what.
package objectstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/sealgate/sealgate/config"
)

// Options configure a Store.
type Options struct {
	Endpoint  string // host[:port]
	Bucket    string
	Region    string
	Prefix    string // put before every object name
	AccessKey string
	SecretKey string
	Insecure  bool // plain HTTP (a store on loopback)
	// Transport, when set, carries the requests (tests).
	Transport http.RoundTripper
}

// Store is one bucket of an object store.
type Store struct {
	c      *minio.Client
	bucket string
	prefix string
}

// ErrNotFound: no object of that name.
var ErrNotFound = errors.New("objectstore: no such object")

// New connects to the bucket (it must exist).
func New(o Options) (*Store, error) {
	c, err := minio.New(o.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(o.AccessKey, o.SecretKey, ""),
		Secure:    !o.Insecure,
		Region:    o.Region,
		Transport: o.Transport,
	})
	if err != nil {
		return nil, fmt.Errorf("escrow.object_store: %w", err)
	}
	return &Store{c: c, bucket: o.Bucket, prefix: o.Prefix}, nil
}

// Check verifies that the bucket exists and answers.
func (s *Store) Check(ctx context.Context) error {
	ok, err := s.c.BucketExists(ctx, s.bucket)
	switch {
	case err != nil:
		return fmt.Errorf("escrow.object_store: bucket %s: %w", s.bucket, err)
	case !ok:
		return fmt.Errorf("escrow.object_store: bucket %s does not exist", s.bucket)
	}
	return nil
}

// PutObject stores data under name, replacing what was there.
func (s *Store) PutObject(ctx context.Context, name string, data []byte) error {
	_, err := s.c.PutObject(ctx, s.bucket, s.prefix+name, bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream"})
	return err
}

// GetObject reads the object name (ErrNotFound when there is none).
func (s *Store) GetObject(ctx context.Context, name string) ([]byte, error) {
	obj, err := s.c.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err != nil {
		return nil, notFound(err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		return nil, notFound(err)
	}
	return data, nil
}

// DeleteObject removes the object name; one that is not there is not an
// error.
func (s *Store) DeleteObject(ctx context.Context, name string) error {
	return s.c.RemoveObject(ctx, s.bucket, s.prefix+name, minio.RemoveObjectOptions{})
}

func notFound(err error) error {
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return ErrNotFound
	}
	return err
}

// ReadKey reads a credential file (its content, without the trailing
// newline).
func ReadKey(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// FromConfig opens escrow.object_store (nil, nil when it is not set),
// reading its credential files; errors name the field.
func FromConfig(o config.ObjectStore) (*Store, error) {
	if o.Endpoint == "" {
		return nil, nil
	}
	ak, err := ReadKey(o.AccessKeyFile)
	if err != nil {
		return nil, fmt.Errorf("escrow.object_store.access_key_file: %w", err)
	}
	sk, err := ReadKey(o.SecretKeyFile)
	if err != nil {
		return nil, fmt.Errorf("escrow.object_store.secret_key_file: %w", err)
	}
	return New(Options{Endpoint: o.Endpoint, Bucket: o.Bucket, Region: o.Region, Prefix: o.Prefix,
		AccessKey: ak, SecretKey: sk, Insecure: o.Insecure})
}
