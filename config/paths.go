package config

import (
	"net/netip"
	"os"
	"path/filepath"
)

// SpoolDBFile is the bbolt spool in the data dir.
func (c *Config) SpoolDBFile() string { return filepath.Join(c.DataDir, "spool.db") }

// SpoolKeyFile is queue.key_file, or spool.key in the data dir.
func (c *Config) SpoolKeyFile() string {
	if c.Queue.KeyFile != "" {
		return c.Queue.KeyFile
	}
	return filepath.Join(c.DataDir, "spool.key")
}

// SelfSignedCertFiles is where the bootstrap certificate lives when no
// inbound.tls certificate is configured.
func (c *Config) SelfSignedCertFiles() (cert, key string) {
	return filepath.Join(c.DataDir, "tls", "cert.pem"), filepath.Join(c.DataDir, "tls", "key.pem")
}

// ServerHostname is hostname, else the machine's name, else "localhost".
func (c *Config) ServerHostname() string {
	if c.Hostname != "" {
		return c.Hostname
	}
	if h, err := os.Hostname(); err == nil && validHostname(h) {
		return h
	}
	return "localhost"
}

// Networks returns inbound.trusted_networks parsed; entries that do not
// parse are skipped (validation has refused them already).
func (i *Inbound) Networks() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range i.TrustedNetworks {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// PrivateNetworks returns outbound.allowed_private_networks parsed;
// entries that do not parse are skipped (validation has refused them).
func (o *Outbound) PrivateNetworks() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range o.AllowedPrivateNetworks {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// AdminTokenFile holds the bearer token of the admin API: created 0600
// in the data dir on first start, read by the CLI.
func (c *Config) AdminTokenFile() string { return filepath.Join(c.DataDir, "admin.token") }
