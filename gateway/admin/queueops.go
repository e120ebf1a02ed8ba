package admin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sealgate/sealgate/certs"
	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway/audit"
	"github.com/sealgate/sealgate/internal/objectstore"
	"github.com/sealgate/sealgate/pgstore"
	"github.com/sealgate/sealgate/queue"
)

// OpenQueueOps gives the queue CLI its view of the spool: the spool file
// itself when no server holds it, or the running server's admin API when
// one does (bbolt's file lock tells which). close releases what it opened.
func OpenQueueOps(cfg *config.Config) (ops QueueOps, where string, close func() error, err error) {
	path := cfg.SpoolDBFile()
	if _, err := os.Stat(path); err != nil {
		return nil, "", nil, fmt.Errorf("no spool at %s (has sealgate run with this config?): %w", path, err)
	}
	store, err := queue.Open(queue.Options{
		Path:         path,
		KeyFile:      cfg.SpoolKeyFile(),
		RetryInitial: cfg.Queue.RetryInitial.D(),
		RetryMax:     cfg.Queue.RetryMax.D(),
		Expiry:       cfg.Queue.Expiry.D(),
		Retention:    cfg.Queue.Retention.D(),
		LockTimeout:  300 * time.Millisecond,
		// A change made here is on the trail at once, as the server
		// would write it (not later, under its old time).
		Audit:       audit.FromChange,
		AuditEscrow: audit.FromEscrow,
	})
	switch {
	case err == nil && cfg.Shared():
		// A fleet's node: what the fleet shares is read and written in
		// the shared store, as the server would.
		shared, err := pgstore.Open(context.Background(), pgstore.Options{DSN: cfg.Store.Postgres.DSN, KeyFile: cfg.FleetKeyFile()})
		if err != nil {
			store.Close()
			return nil, "", nil, fmt.Errorf("store.postgres: %w", err)
		}
		store.UseShared(shared)
		head, _, _ := store.AuditHead()
		closeBoth := func() error {
			signOffline(cfg, store, head)
			shared.Close()
			return store.Close()
		}
		return store, "spool " + path + " and the fleet's shared store", closeBoth, nil
	case err == nil:
		head, _, _ := store.AuditHead()
		return store, "spool " + path, func() error { signOffline(cfg, store, head); return store.Close() }, nil
	case errors.Is(err, queue.ErrLocked):
		if cfg.Admin.Listen == "" {
			return nil, "", nil, fmt.Errorf("the spool is in use by a running server and admin.listen is off")
		}
		token, err := ReadToken(cfg.AdminTokenFile())
		if err != nil {
			return nil, "", nil, fmt.Errorf("the spool is in use by a running server, and its admin token cannot be read: %w", err)
		}
		if cf := cfg.Admin.TLS.CertFile; cf != "" {
			c, err := NewAdminClientTLS(cfg.Admin.Listen, token, cf)
			if err != nil {
				return nil, "", nil, err
			}
			return c, "server at https://" + cfg.Admin.Listen, func() error { return nil }, nil
		}
		return NewAdminClient(cfg.Admin.Listen, token), "server at " + cfg.Admin.Listen, func() error { return nil }, nil
	default:
		return nil, "", nil, err
	}
}

// OpenKeyOps gives the keys CLI its view of the key store, as
// OpenQueueOps does for the queue: the spool file when no server holds
// it, the running server's admin API when one does.
func OpenKeyOps(cfg *config.Config) (ops KeyOps, where string, close func() error, err error) {
	q, where, closeQ, err := OpenQueueOps(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	switch q := q.(type) {
	case *queue.Store:
		return auditedKeys{KeyOps: certs.NewKeyring(certs.NewSpoolKeyStore(q), nil), store: q}, where, closeQ, nil
	case *AdminClient:
		return q, where, closeQ, nil
	}
	closeQ()
	return nil, "", nil, fmt.Errorf("unexpected spool access %T", q)
}

// OpenEscrowOps gives the escrow CLI its view of the escrow store, as
// OpenQueueOps does for the queue.
func OpenEscrowOps(cfg *config.Config) (ops EscrowOps, where string, close func() error, err error) {
	q, where, closeQ, err := OpenQueueOps(cfg)
	if err != nil {
		return nil, "", nil, err
	}
	if ops, err = EscrowOpsFor(q, cfg); err != nil {
		closeQ()
		return nil, "", nil, err
	}
	return ops, where, closeQ, nil
}

// EscrowOpsFor gives the escrow operations beside the spool access q
// (from OpenQueueOps): the running server's, or the escrow store in the
// spool file, unlocked with cfg's escrow key. A spool that never held
// escrowed mail has an empty one, and no key is created for it.
func EscrowOpsFor(q QueueOps, cfg *config.Config) (EscrowOps, error) {
	switch q := q.(type) {
	case *AdminClient:
		return q.Escrow(), nil
	case *queue.Store:
		inUse, err := q.EscrowInUse()
		if err != nil {
			return nil, err
		}
		if !inUse {
			return EscrowOf(nil), nil
		}
		opts := queue.EscrowOptions{KeyFile: cfg.EscrowKeyFile(), Expiry: cfg.Escrow.Expiry.D()}
		if o, err := objectstore.FromConfig(cfg.Escrow.ObjectStore); err != nil {
			return nil, err
		} else if o != nil {
			opts.Objects = o // a revocation here deletes the object too
		}
		e, err := q.OpenEscrow(opts)
		if err != nil {
			return nil, err
		}
		return EscrowOf(e), nil
	}
	return nil, fmt.Errorf("unexpected spool access %T", q)
}

// signOffline signs the audit chain's head when a command changed a
// stopped server's spool (an admin action is an entry; head is where the
// chain stood at open, and only the tail up to it is judged: the
// command's own entries are not part of what an earlier crash left), as
// the server does at every stop, so that a trail's unsigned tail stays
// short. A command that wrote nothing signs
// nothing: audit verify must not cover up what it found. Without a
// signing key (a server that never started) there is nothing to sign with.
func signOffline(cfg *config.Config, store *queue.Store, head uint64) {
	if now, _, err := store.AuditHead(); err != nil || now == head {
		return
	}
	key, err := audit.LoadKeyIfExists(cfg.AuditSigningKeyFile())
	if err != nil || key == nil {
		return
	}
	t := audit.New(store, key, nil)
	t.SetCheckpointInterval(cfg.Audit.CheckpointInterval.D())
	_, problem, err := t.SignHead(time.Now(), head)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sealgate: audit checkpoint: %v\n", err)
	} else if problem != "" {
		fmt.Fprintf(os.Stderr, "sealgate: audit trail: %s; put on record in the trail\n", problem)
	}
}
