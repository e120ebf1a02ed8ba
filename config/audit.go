package config

import "path/filepath"

// Audit configures the audit trail: every message's story (received,
// decided, each attempt, its end) and every admin action, hash-chained in
// the spool file and checkpointed with an Ed25519 signature.
type Audit struct {
	// SigningKey is the Ed25519 key (PKCS #8 PEM) that signs checkpoints,
	// created 0600 on first start; "" means data_dir/audit-signing.key.
	// Keep its public key (sealgate audit key) somewhere else too.
	SigningKey string `yaml:"signing_key"`
	// Retention is how long records are kept (6 years by default, as
	// HIPAA asks of documentation); older ones are pruned up to a signed
	// checkpoint, so the rest stays verifiable.
	Retention Duration `yaml:"retention"`
	// CheckpointInterval is how often the chain's head is signed when it
	// moved.
	CheckpointInterval Duration `yaml:"checkpoint_interval"`
}

// AuditSigningKeyFile is audit.signing_key, or audit-signing.key in the
// data dir.
func (c *Config) AuditSigningKeyFile() string {
	if c.Audit.SigningKey != "" {
		return c.Audit.SigningKey
	}
	return filepath.Join(c.DataDir, "audit-signing.key")
}

func (v *validator) validateAudit(a *Audit) {
	v.positive("audit.retention", int64(a.Retention))
	v.positive("audit.checkpoint_interval", int64(a.CheckpointInterval))
}
