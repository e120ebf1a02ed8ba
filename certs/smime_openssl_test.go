package certs

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// smimePeer is a recipient whose certificate and private key the openssl
// command line made: the key never passes through our code.
type smimePeer struct {
	cert     *x509.Certificate
	certPath string
	keyPath  string
}

// smimeOpenSSL returns the openssl command, skipping the test when it is
// missing — except under CI, where a missing tool is a failure.
func smimeOpenSSL(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("openssl is required under CI (.ci/run installs it): %v", err)
		}
		t.Skipf("openssl not installed, interop test skipped: %v", err)
	}
	return path
}

func smimeRun(t testing.TB, dir, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

// smimeTestCA makes, with openssl, a CA and one recipient certificate per
// key spec ("rsa:2048", "ec:P-256", …), each with emailProtection, an
// rfc822Name and the key usage its algorithm needs.
func smimeTestCA(t testing.TB, dir string, specs map[string]string) (caPath string, peers map[string]smimePeer) {
	t.Helper()
	openssl := smimeOpenSSL(t)
	smimeRun(t, dir, openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=sealgate test SMIME CA")
	peers = map[string]smimePeer{}
	serial := 2
	for addr, spec := range specs {
		name := strings.NewReplacer("@", "_", ".", "_").Replace(addr)
		var keyArgs []string
		usage := "keyEncipherment"
		if curve, ok := strings.CutPrefix(spec, "ec:"); ok {
			keyArgs = []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:" + curve}
			usage = "keyAgreement"
		} else {
			keyArgs = []string{"-newkey", spec}
		}
		ext := "basicConstraints=CA:FALSE\n" +
			"keyUsage=critical,digitalSignature," + usage + "\n" +
			"extendedKeyUsage=emailProtection\n" +
			"subjectAltName=email:" + addr + "\n"
		if err := os.WriteFile(filepath.Join(dir, name+".ext"), []byte(ext), 0o600); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"req", "-new"}, keyArgs...)
		args = append(args, "-nodes", "-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+addr)
		smimeRun(t, dir, openssl, args...)
		smimeRun(t, dir, openssl, "x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
			"-set_serial", strings.Repeat("1", serial), "-days", "1", "-extfile", name+".ext", "-out", name+".pem")
		serial++
		peers[addr] = smimePeer{
			cert:     smimeReadCert(t, filepath.Join(dir, name+".pem")),
			certPath: filepath.Join(dir, name+".pem"),
			keyPath:  filepath.Join(dir, name+".key"),
		}
	}
	return filepath.Join(dir, "ca.pem"), peers
}

func smimeReadCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cert
}

// smimeDecrypt runs openssl cms -decrypt on in as peer and returns what it
// printed to -out.
func smimeDecrypt(t testing.TB, dir string, peer smimePeer, in string, extra ...string) []byte {
	t.Helper()
	out := in + ".out"
	args := append([]string{"cms", "-decrypt", "-in", in, "-recip", peer.certPath, "-inkey", peer.keyPath, "-out", out}, extra...)
	smimeRun(t, dir, smimeOpenSSL(t), args...)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
