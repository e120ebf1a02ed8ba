package pgstore

// The correspondents' key store's records (certs.RecordStore), shared:
// public keys and certificates, looked up at each delivery, so a key
// imported or removed through one node counts on every node at once.

// PutKeyRecord stores (or replaces) one key record.
func (s *Store) PutKeyRecord(id string, data []byte) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	_, err := s.pool.Exec(ctx, `INSERT INTO key_records (id, data) VALUES ($1, $2)
		ON CONFLICT (id) DO UPDATE SET data = excluded.data`, []byte(id), data)
	return err
}

// DeleteKeyRecords removes key records; IDs that are not there are
// ignored.
func (s *Store) DeleteKeyRecords(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		keys[i] = []byte(id)
	}
	ctx, cancel := ctxTimeout()
	defer cancel()
	_, err := s.pool.Exec(ctx, "DELETE FROM key_records WHERE id = ANY($1)", keys)
	return err
}

// ForEachKeyRecord calls fn with each record whose ID starts with
// prefix, in ID order (bytewise). The rows are read before fn runs, so
// fn may call the store.
func (s *Store) ForEachKeyRecord(prefix string, fn func(id string, data []byte) error) error {
	ctx, cancel := ctxTimeout()
	defer cancel()
	p := []byte(prefix)
	rows, err := s.pool.Query(ctx, `SELECT id, data FROM key_records
		WHERE substring(id FROM 1 FOR length($1::bytea)) = $1::bytea ORDER BY id`, p)
	if err != nil {
		return err
	}
	type rec struct{ id, data []byte }
	var recs []rec
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.id, &r.data); err != nil {
			rows.Close()
			return err
		}
		recs = append(recs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range recs {
		if err := fn(string(r.id), r.data); err != nil {
			return err
		}
	}
	return nil
}
