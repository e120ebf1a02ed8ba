package pgstore

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Leader elects, among the nodes sharing the database, the one that runs
// the fleet's leader-only jobs (the TLS probe of every known domain). The
// leader holds a session-level advisory lock on one connection of its
// own; when the node stops or loses the database, its session ends, the
// lock goes with it, and another node takes it at its next try.
type Leader struct {
	s      *Store
	every  time.Duration
	leader atomic.Bool
	conn   *pgxpool.Conn
	// OnChange, when set, hears each change (true: this node leads now).
	OnChange func(leading bool)
}

// NewLeader returns an election that tries for the lock every interval
// (0: 10 s) once Run is called.
func (s *Store) NewLeader(interval time.Duration) *Leader {
	return &Leader{s: s, every: cmpDuration(interval, 10*time.Second)}
}

// IsLeader reports whether this node holds the lock.
func (l *Leader) IsLeader() bool { return l.leader.Load() }

// Run tries for the lock, and checks the held one is still there, until
// ctx ends; then it gives the lock up.
func (l *Leader) Run(ctx context.Context) {
	t := time.NewTicker(l.every)
	defer t.Stop()
	defer l.resign()
	for {
		l.round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// round takes the lock when free, or checks that the session holding it
// is alive.
func (l *Leader) round(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	if l.conn != nil {
		// Still holding the lock, on this very session (a server that
		// ended the session and a pool that reconnected would not be).
		var held bool
		err := l.conn.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND pid = pg_backend_pid() AND classid = $1 AND objid = $2)`, int64(lockLeader>>32), int64(lockLeader&0xffffffff)).Scan(&held)
		if err != nil || !held {
			l.s.logger.Warn("leader lost its database session or its lock; another node may take over", "err", err)
			l.drop()
		}
		return
	}
	conn, err := l.s.pool.Acquire(cctx)
	if err != nil {
		return
	}
	// The server must notice a leader that vanished (a host that died, a
	// cut network) within seconds, not after the system's two-hour TCP
	// keepalive: the lock goes with the session.
	if _, err := conn.Exec(cctx, "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3"); err != nil {
		conn.Release()
		return
	}
	var got bool
	if err := conn.QueryRow(cctx, "SELECT pg_try_advisory_lock($1)", lockLeader).Scan(&got); err != nil || !got {
		conn.Release()
		return
	}
	l.conn = conn
	l.set(true)
}

// drop forgets a session that failed: the connection is closed, never
// put back in the pool (a lock may still hang on it until it ends).
func (l *Leader) drop() {
	if l.conn != nil {
		l.conn.Hijack().Close(context.Background())
		l.conn = nil
	}
	l.set(false)
}

// resign releases the lock (at shutdown), so that another node takes
// over at once.
func (l *Leader) resign() {
	if l.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := l.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", lockLeader); err != nil {
		l.drop()
		return
	}
	l.conn.Release()
	l.conn = nil
	l.set(false)
}

func (l *Leader) set(leading bool) {
	if l.leader.Swap(leading) != leading {
		if leading {
			l.s.logger.Info("this node now runs the fleet's leader-only jobs")
		} else {
			l.s.logger.Info("this node no longer runs the fleet's leader-only jobs")
		}
		if l.OnChange != nil {
			l.OnChange(leading)
		}
	}
}
