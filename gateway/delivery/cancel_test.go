package delivery

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/sealgate/sealgate/internal/testutil"
	"github.com/sealgate/sealgate/queue"
)

// deliverCancelledAfter runs one delivery to domain and cancels its
// context after d; it returns the result and how long Deliver took.
func (f *deliveryFixture) deliverCancelledAfter(domain string, d time.Duration) ([]queue.RcptOutcome, time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(d, cancel)
	start := time.Now()
	_, out := f.d.Deliver(ctx, Request{ID: "T1", From: "alice@org.test", Domain: domain,
		Recipients: []string{"bob@" + domain}, Body: Bytes("Subject: t\r\n\r\nhello\r\n")})
	return out, time.Since(start)
}

// TestDeliverCancelledInsideTransaction: a shutdown aborts a transaction
// that a slow server keeps waiting for its reply to the message, at once
// rather than after the command timeout, and the recipient is deferred,
// not delivered or bounced — with BDAT (the sink offers CHUNKING) and
// with DATA.
func TestDeliverCancelledInsideTransaction(t *testing.T) {
	for _, noChunking := range []bool{false, true} {
		f := newDeliveryFixture(t, nil) // command timeout 5 s
		f.d.noChunking = noChunking
		stall := make(chan struct{})
		sink := f.mx("slow.test", "mx.slow.test", "127.0.0.2", 10, testutil.SinkOptions{
			DataReply: func() *smtp.SMTPError { <-stall; return nil },
		})
		t.Cleanup(func() { close(stall) }) // before the sink stops: it waits for its sessions
		out, took := f.deliverCancelledAfter("slow.test", 300*time.Millisecond)
		if took > 2*time.Second {
			t.Errorf("DATA=%v: Deliver returned %v after its context ended", noChunking, took-300*time.Millisecond)
		}
		if out[0].Delivered || out[0].Permanent || out[0].Status != "4.4.5" {
			t.Errorf("DATA=%v: a cancelled delivery must defer with 4.4.5: %+v", noChunking, out[0])
		}
		if n := len(sink.Messages()); n != 0 {
			t.Errorf("DATA=%v: sink recorded %d messages", noChunking, n)
		}
	}
}

// TestDeliverCancelledBeforeGreeting: a server that accepts the
// connection and never greets does not hold a shutdown either.
func TestDeliverCancelledBeforeGreeting(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", f.port))
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 10)
	t.Cleanup(func() {
		ln.Close()
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // silent until the test ends
		}
	}()
	f.dns.AddMX("mute.test", "mx.mute.test", 10)
	f.dns.AddA("mx.mute.test", "127.0.0.2")
	out, took := f.deliverCancelledAfter("mute.test", 300*time.Millisecond)
	if took > 2*time.Second {
		t.Errorf("Deliver returned %v after its context ended", took-300*time.Millisecond)
	}
	if out[0].Delivered || out[0].Permanent || out[0].Status != "4.4.5" {
		t.Errorf("a cancelled delivery must defer with 4.4.5: %+v", out[0])
	}
}
