package pgstore

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/sealgate/sealgate/queue"
)

// MergeTLSRPT adds a node's aggregate to the fleet's (store migrate).
func (s *Store) MergeTLSRPT(o queue.TLSRPTRecord) error {
	return s.updateTLSRPT(o.Day, o.Domain, o.PolicyType, func(r *queue.TLSRPTRecord) { r.Merge(o) })
}

// RecordTLSSession counts a session in the fleet's aggregate of its day,
// domain and policy type; the row is locked while it is updated, so the
// counts of nodes writing at once add up.
func (s *Store) RecordTLSSession(sess queue.TLSSession) error {
	return s.updateTLSRPT(sess.Day, sess.Domain, sess.PolicyType, func(r *queue.TLSRPTRecord) { r.Add(sess) })
}

// updateTLSRPT changes one aggregate with its row locked.
func (s *Store) updateTLSRPT(day, domain, policyType string, change func(r *queue.TLSRPTRecord)) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	domain = strings.ToLower(domain)
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		empty, _ := json.Marshal(queue.TLSRPTRecord{Day: day, Domain: domain, PolicyType: policyType})
		if _, err := tx.Exec(ctx, `INSERT INTO tlsrpt (day, domain, policy_type, record) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING`, day, domain, policyType, empty); err != nil {
			return err
		}
		var data []byte
		if err := tx.QueryRow(ctx, `SELECT record FROM tlsrpt WHERE day = $1 AND domain = $2 AND policy_type = $3 FOR UPDATE`,
			day, domain, policyType).Scan(&data); err != nil {
			return err
		}
		var r queue.TLSRPTRecord
		if err := json.Unmarshal(data, &r); err != nil {
			return err
		}
		change(&r)
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE tlsrpt SET record = $4 WHERE day = $1 AND domain = $2 AND policy_type = $3",
			day, domain, policyType, data)
		return err
	})
}

// TLSRPTBefore returns the fleet's aggregates of every day before day,
// oldest first.
func (s *Store) TLSRPTBefore(day string) ([]queue.TLSRPTRecord, error) {
	ctx, cancel := ctxTimeout()
	defer cancel()
	rows, err := s.pool.Query(ctx, "SELECT record FROM tlsrpt WHERE day < $1 ORDER BY day, domain, policy_type", day)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []queue.TLSRPTRecord
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var r queue.TLSRPTRecord
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, errors.Join(errors.New("pgstore: unreadable TLSRPT record"), err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// DeleteTLSRPT removes what r counted from its aggregate once its report
// is sent: the row goes, unless a node counted sessions into it since
// it was read, which stay (row locked) for the next report.
func (s *Store) DeleteTLSRPT(r queue.TLSRPTRecord) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	day, domain, policyType := r.Day, strings.ToLower(r.Domain), r.PolicyType
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var data []byte
		err := tx.QueryRow(ctx, `SELECT record FROM tlsrpt WHERE day = $1 AND domain = $2 AND policy_type = $3 FOR UPDATE`,
			day, domain, policyType).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		var now queue.TLSRPTRecord
		if json.Unmarshal(data, &now) != nil || !now.Subtract(r) {
			_, err = tx.Exec(ctx, "DELETE FROM tlsrpt WHERE day = $1 AND domain = $2 AND policy_type = $3", day, domain, policyType)
			return err
		}
		if data, err = json.Marshal(now); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE tlsrpt SET record = $4 WHERE day = $1 AND domain = $2 AND policy_type = $3",
			day, domain, policyType, data)
		return err
	})
}
