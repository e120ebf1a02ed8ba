package certs

import (
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"testing"
)

// BenchmarkBuildSMIME encrypts a whole message with a binary attachment
// to one RSA-2048 and one EC P-256 recipient. B/op against the message
// size is the memory cost; MB/s is throughput over the input message.
//
//	go test ./certs -run '^$' -bench BuildSMIME -benchmem
func BenchmarkBuildSMIME(b *testing.B) {
	recipients := []*x509.Certificate{
		smimeTestCert(b, smimeCertSpec{}),
		smimeTestCert(b, smimeCertSpec{key: "p256"}),
	}
	for _, size := range []int{1 << 20, 25 << 20} {
		attachment := make([]byte, size*3/4) // base64 brings it to about size
		rand.Read(attachment)
		msg := smimeTestMessage(attachment)
		for _, cipher := range []SMIMECipher{SMIMEAES256CBC, SMIMEAES256GCM} {
			b.Run(fmt.Sprintf("%dMB/%v", size>>20, cipher), func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := BuildSMIME(msg, recipients, "Encrypted message", SMIMEOptions{Cipher: cipher}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
