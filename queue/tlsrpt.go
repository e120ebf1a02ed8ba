package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

var bucketTLSRPT = []byte("tlsrpt")

const kindTLSRPT = "tlsrpt"

// TLSRPTRecord aggregates one UTC day of TLS sessions to one domain under
// one policy (RFC 8460 §4.4): the counts and, per failure kind and host,
// how often it failed.
type TLSRPTRecord struct {
	Day          string          `json:"day"` // 2006-01-02, UTC
	Domain       string          `json:"domain"`
	PolicyType   string          `json:"policy_type"` // "sts", "tlsa", "no-policy-found"
	PolicyString []string        `json:"policy_string,omitempty"`
	MXHosts      []string        `json:"mx_hosts,omitempty"`
	Successes    int64           `json:"successes"`
	Failures     int64           `json:"failures"`
	Details      []TLSRPTFailure `json:"details,omitempty"`
}

// TLSRPTFailure counts failed sessions of one kind at one host.
type TLSRPTFailure struct {
	ResultType  string `json:"result_type"` // RFC 8460 §4.3, e.g. "starttls-not-supported"
	SendingIP   string `json:"sending_ip,omitempty"`
	ReceivingMX string `json:"receiving_mx,omitempty"`
	ReceivingIP string `json:"receiving_ip,omitempty"`
	Count       int64  `json:"count"`
}

// TLSSession is one TLS session outcome to count.
type TLSSession struct {
	Day, Domain, PolicyType string
	PolicyString, MXHosts   []string
	OK                      bool
	Failure                 TLSRPTFailure // when !OK; Count is ignored
}

// tlsrptKey is the day in clear (TLSRPTBefore selects by it) and the
// domain and policy type as an index key (index.go).
func tlsrptKey(sl *sealer, day, domain, policyType string) []byte {
	return append([]byte(day+"/"), sl.indexKey(kindTLSRPT, strings.ToLower(domain)+"\x00"+policyType)...)
}

// Add counts a session in the aggregate r (of the session's day, domain
// and policy type).
func (r *TLSRPTRecord) Add(sess TLSSession) {
	if len(sess.PolicyString) > 0 {
		r.PolicyString = sess.PolicyString
	}
	for _, mx := range sess.MXHosts {
		if !slices.Contains(r.MXHosts, mx) {
			r.MXHosts = append(r.MXHosts, mx)
		}
	}
	if sess.OK {
		r.Successes++
	} else {
		r.Failures++
		f := sess.Failure
		found := false
		for i := range r.Details {
			d := &r.Details[i]
			if d.ResultType == f.ResultType && d.ReceivingMX == f.ReceivingMX && d.ReceivingIP == f.ReceivingIP {
				d.Count++
				found = true
			}
		}
		if !found {
			f.Count = 1
			r.Details = append(r.Details, f)
		}
	}
}

// Merge adds the counts of o (an aggregate of the same day, domain and
// policy type, from another node) to r.
func (r *TLSRPTRecord) Merge(o TLSRPTRecord) {
	if len(r.PolicyString) == 0 {
		r.PolicyString = o.PolicyString
	}
	for _, mx := range o.MXHosts {
		if !slices.Contains(r.MXHosts, mx) {
			r.MXHosts = append(r.MXHosts, mx)
		}
	}
	r.Successes += o.Successes
	r.Failures += o.Failures
	for _, f := range o.Details {
		found := false
		for i := range r.Details {
			d := &r.Details[i]
			if d.ResultType == f.ResultType && d.ReceivingMX == f.ReceivingMX && d.ReceivingIP == f.ReceivingIP {
				d.Count += f.Count
				found = true
			}
		}
		if !found {
			r.Details = append(r.Details, f)
		}
	}
}

// Subtract takes the counts of sent (what a report carried, read from r
// earlier) out of r, and reports whether sessions counted since remain:
// they go into the next report, neither lost nor sent twice.
func (r *TLSRPTRecord) Subtract(sent TLSRPTRecord) bool {
	r.Successes = max(r.Successes-sent.Successes, 0)
	r.Failures = max(r.Failures-sent.Failures, 0)
	for _, f := range sent.Details {
		for i := range r.Details {
			d := &r.Details[i]
			if d.ResultType == f.ResultType && d.ReceivingMX == f.ReceivingMX && d.ReceivingIP == f.ReceivingIP {
				d.Count -= f.Count
			}
		}
	}
	r.Details = slices.DeleteFunc(r.Details, func(d TLSRPTFailure) bool { return d.Count <= 0 })
	return r.Successes > 0 || r.Failures > 0
}

// SharedTLSRPT is a fleet's TLS report aggregates (pgstore implements
// it): every node counts its sessions into the same day's report, which
// the leader sends once.
type SharedTLSRPT interface {
	RecordTLSSession(sess TLSSession) error
	TLSRPTBefore(day string) ([]TLSRPTRecord, error)
	DeleteTLSRPT(r TLSRPTRecord) error
}

// RecordTLSSession counts a session in its day's aggregate.
func (s *Store) RecordTLSSession(sess TLSSession) error {
	if sh, ok := s.shared.(SharedTLSRPT); ok {
		return sh.RecordTLSSession(sess)
	}
	key := tlsrptKey(s.seal, sess.Day, sess.Domain, sess.PolicyType)
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTLSRPT)
		r := TLSRPTRecord{Day: sess.Day, Domain: strings.ToLower(sess.Domain), PolicyType: sess.PolicyType}
		if v := b.Get(key); v != nil {
			plain, err := s.seal.open(kindTLSRPT, string(key), v)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(plain, &r); err != nil {
				return err
			}
		}
		r.Add(sess)
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put(key, s.seal.seal(kindTLSRPT, string(key), data))
	})
}

// TLSRPTBefore returns the aggregates of every day before day (the days
// whose reports are due), oldest first.
func (s *Store) TLSRPTBefore(day string) ([]TLSRPTRecord, error) {
	if sh, ok := s.shared.(SharedTLSRPT); ok {
		return sh.TLSRPTBefore(day)
	}
	var out []TLSRPTRecord
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTLSRPT).ForEach(func(k, v []byte) error {
			if string(k) >= day {
				return nil
			}
			plain, err := s.seal.open(kindTLSRPT, string(k), v)
			if err != nil {
				s.logger.Error("unreadable TLSRPT record skipped", "key", fmt.Sprintf("%x", k), "err", err)
				return nil
			}
			var r TLSRPTRecord
			if err := json.Unmarshal(plain, &r); err != nil {
				return nil
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// DeleteTLSRPT removes what r counted (read by TLSRPTBefore) from its
// aggregate once its report is sent (or known to be unwanted): the
// aggregate goes, unless sessions were counted into it since, which stay
// for the next report.
func (s *Store) DeleteTLSRPT(r TLSRPTRecord) error {
	if sh, ok := s.shared.(SharedTLSRPT); ok {
		return sh.DeleteTLSRPT(r)
	}
	key := tlsrptKey(s.seal, r.Day, r.Domain, r.PolicyType)
	return s.commit(context.Background(), 0, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTLSRPT)
		v := b.Get(key)
		if v == nil {
			return nil
		}
		var now TLSRPTRecord
		plain, err := s.seal.open(kindTLSRPT, string(key), v)
		if err == nil {
			err = json.Unmarshal(plain, &now)
		}
		if err != nil || !now.Subtract(r) {
			return b.Delete(key) // sent, or unreadable (TLSRPTBefore skips it)
		}
		data, err := json.Marshal(now)
		if err != nil {
			return err
		}
		return b.Put(key, s.seal.seal(kindTLSRPT, string(key), data))
	})
}
