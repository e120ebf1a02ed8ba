package certs

import (
	"bytes"
	"testing"
)

// FuzzSMIMESplitHeader: any message either splits into fields that put
// back together give the message again, or is refused with an error.
func FuzzSMIMESplitHeader(f *testing.F) {
	f.Add([]byte("Subject: x\r\n folded\r\nFrom: a@b\r\n\r\nbody\r\n"))
	f.Add([]byte("\r\nbody only"))
	f.Add([]byte("From: a@b\r\nTo: c@d"))
	f.Add([]byte("Subject: x\nbare: lf\r\n\r\n"))
	f.Add([]byte(" leading fold\r\n\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		fields, body, err := smimeSplitHeader(msg)
		if err != nil || body == nil || bytes.HasPrefix(msg, []byte("\r\n")) {
			return
		}
		var joined []byte
		for _, f := range fields {
			if f.name == "" || !bytes.HasSuffix(f.raw, []byte("\r\n")) {
				t.Fatalf("field %q raw %q", f.name, f.raw)
			}
			joined = append(joined, f.raw...)
		}
		joined = append(append(joined, "\r\n"...), body...)
		if !bytes.Equal(joined, msg) {
			t.Fatalf("split and joined:\n%q\nwant\n%q", joined, msg)
		}
	})
}

// FuzzSMIMECapabilities: a certificate's capabilities extension is
// untrusted DER; it is parsed or refused, never a panic.
func FuzzSMIMECapabilities(f *testing.F) {
	f.Add(smimeCapabilitiesExt(oidAES256GCM, oidAES256CBC).Value)
	f.Add([]byte{0x30, 0x03, 0x02})
	f.Add([]byte{0x30, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		_, _ = SMIMECapabilitiesListGCM(der)
	})
}
