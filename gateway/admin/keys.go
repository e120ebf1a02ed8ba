package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/queue"
)

// KeyOps are the key store operations an admin can run. *certs.Keyring
// implements them directly (the server is stopped and the CLI opens the
// data dir itself); AdminClient implements them over the admin API of a
// running server. ImportKeys checks and stores every key in one file
// (armored or binary OpenPGP; S/MIME certificates in PEM, DER or a
// PKCS #7 bundle) or refuses the file with an error wrapping
// certs.ErrBadKey; RemoveKey returns an error wrapping certs.ErrNoKey
// when no entry has that fingerprint. Listings never carry key material.
type KeyOps interface {
	ImportKeys(data []byte) ([]certs.Key, error)
	Keys() ([]certs.Key, error)
	KeysFor(address string) ([]certs.Key, error)
	RemoveKey(fingerprint string) (int, error)
}

// maxKeyUpload bounds an import request: a key file (certs reads at most
// 8 MiB of it) in base64 inside JSON.
const maxKeyUpload = 12 << 20

// keyImport is the body of POST /api/v1/keys.
type keyImport struct {
	Data []byte `json:"data"` // the file as read, base64 in JSON
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := a.keys.Keys()
	if err == nil {
		var ok bool
		if keys, ok = paginate(w, r, keys, func(k certs.Key) string { return k.Address + "\x00" + k.Fingerprint }); !ok {
			return
		}
	}
	a.writeKeys(w, keys, err)
}

func (a *API) showKeys(w http.ResponseWriter, r *http.Request) {
	addr, err := certs.KeyAddress(r.PathValue("address"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	keys, err := a.keys.KeysFor(addr)
	a.writeKeys(w, keys, err)
}

func (a *API) writeKeys(w http.ResponseWriter, keys []certs.Key, err error) {
	if err != nil {
		a.fail(w, err)
		return
	}
	if keys == nil {
		keys = []certs.Key{}
	}
	writeJSON(w, http.StatusOK, keys)
}

func (a *API) importKeys(w http.ResponseWriter, r *http.Request) {
	var in keyImport
	if err := json.NewDecoder(io.LimitReader(r.Body, maxKeyUpload)).Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be {\"data\": <base64 of the key file>}"})
		return
	}
	keys, err := a.keys.ImportKeys(in.Data)
	if errors.Is(err, certs.ErrBadKey) {
		// What was wrong with the key is what the admin needs to read;
		// it names no secret (a private key is refused, never echoed).
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error()})
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	for _, k := range keys {
		a.logger.Info("key imported by admin", "address", k.Address, "fingerprint", k.Fingerprint, "algorithm", k.Algorithm)
		a.audited(r, "key-import", "", k.Kind+" key "+k.Fingerprint+" for "+k.Address)
	}
	writeJSON(w, http.StatusOK, keys)
}

func (a *API) removeKey(w http.ResponseWriter, r *http.Request) {
	fp := r.PathValue("fingerprint")
	n, err := a.keys.RemoveKey(fp)
	if errors.Is(err, certs.ErrNoKey) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such key"})
		return
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	a.logger.Warn("key removed by admin", "fingerprint", fp, "entries", n)
	a.audited(r, "key-remove", "", "key "+fp+" removed")
	writeJSON(w, http.StatusOK, map[string]int{"removed": n})
}

// refusedError is a 422 from the server: the request was understood and
// refused (a bad key); Error is the server's reason.
type refusedError struct{ msg, kind string }

func (e *refusedError) Error() string { return e.msg }

// Unwrap gives back the spool's error the server refused with, so that
// errors.Is sees through the admin API as it does on the spool file.
func (e *refusedError) Unwrap() error {
	switch e.kind {
	case "held":
		return queue.ErrHeld
	case "finished":
		return queue.ErrFinished
	case "ambiguous":
		return queue.ErrAmbiguous
	}
	return nil
}

// ImportKeys sends one key file to the server to check and store.
func (c *AdminClient) ImportKeys(data []byte) ([]certs.Key, error) {
	var keys []certs.Key
	err := c.send(http.MethodPost, "/api/v1/keys", keyImport{Data: data}, &keys)
	var refused *refusedError
	if errors.As(err, &refused) {
		return nil, fmt.Errorf("%w: %s", certs.ErrBadKey, strings.TrimPrefix(refused.msg, certs.ErrBadKey.Error()+": "))
	}
	return keys, err
}

// Keys lists the key store.
func (c *AdminClient) Keys() ([]certs.Key, error) {
	var keys []certs.Key
	err := c.do(http.MethodGet, "/api/v1/keys", &keys)
	return keys, err
}

// KeysFor lists the keys of one address.
func (c *AdminClient) KeysFor(address string) ([]certs.Key, error) {
	var keys []certs.Key
	err := c.do(http.MethodGet, "/api/v1/keys/"+url.PathEscape(address), &keys)
	return keys, err
}

// RemoveKey deletes every entry of a fingerprint.
func (c *AdminClient) RemoveKey(fingerprint string) (int, error) {
	var res struct{ Removed int }
	err := c.do(http.MethodDelete, "/api/v1/keys/"+url.PathEscape(fingerprint), &res)
	if errors.Is(err, queue.ErrNotFound) {
		return 0, fmt.Errorf("%w: %s", certs.ErrNoKey, fingerprint)
	}
	return res.Removed, err
}
