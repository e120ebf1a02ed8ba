package delivery

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/sealgate/sealgate/internal/testutil"
)

// TestMXOnPrivateAddressIsNotDialled: a domain whose MX resolves to a
// loopback or private address gets no connection unless the network is
// allowed (SSRF and loop guard); the recipient is deferred with the
// reason, and a later MX host on an allowed address is still used.
func TestMXOnPrivateAddressIsNotDialled(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	f.d.opts.AllowedPrivateNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
	internal := f.mx("internal.test", "mx.internal.test", "127.0.0.2", 10, testutil.SinkOptions{})
	_, out := f.deliver("internal.test", "bob@internal.test")
	if out[0].Delivered || out[0].Permanent || out[0].Status != "4.4.4" ||
		!strings.Contains(out[0].Message, "mx.internal.test[127.0.0.2]: loopback address") ||
		!strings.Contains(out[0].Message, "outbound.allowed_private_networks") {
		t.Errorf("outcome %+v", out[0])
	}
	if n := internal.Connections(); n != 0 {
		t.Errorf("the loopback MX was dialled %d times", n)
	}

	// mx1 is refused, mx2 is on an allowed address.
	f.dns.AddMX("two.test", "mx1.two.test", 10)
	f.dns.AddA("mx1.two.test", "127.0.0.2")
	allowed := f.mx("two.test", "mx2.two.test", "127.0.0.3", 20, testutil.SinkOptions{})
	if _, out := f.deliver("two.test", "bob@two.test"); !out[0].Delivered || len(allowed.Messages()) != 1 {
		t.Errorf("allowed second MX: %+v", out[0])
	}
}

// TestMXThatIsOurOwnListenerBounces: an MX that resolves to the address
// and port the gateway itself listens on is a mail loop (as Postfix's
// "mail for … loops back to myself"): it bounces with 5.4.6, even on an
// allowed network, and is never dialled.
func TestMXThatIsOurOwnListenerBounces(t *testing.T) {
	f := newDeliveryFixture(t, nil)
	self := f.mx("loop.test", "mx.loop.test", "127.0.0.4", 10, testutil.SinkOptions{})
	f.d.opts.Self = func() []net.Addr { return []net.Addr{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 4), Port: f.port}} }
	_, out := f.deliver("loop.test", "bob@loop.test")
	if out[0].Delivered || !out[0].Permanent || out[0].Status != "5.4.6" || !strings.Contains(out[0].Message, "loops back to myself") {
		t.Errorf("outcome %+v", out[0])
	}
	if n := self.Connections(); n != 0 {
		t.Errorf("our own listener was dialled %d times", n)
	}

	// A listener on the unspecified address is every local address.
	f.d.opts.Self = func() []net.Addr { return []net.Addr{&net.TCPAddr{IP: net.IPv4zero, Port: f.port}} }
	if _, out := f.deliver("loop.test", "bob@loop.test"); out[0].Status != "5.4.6" {
		t.Errorf("listener on 0.0.0.0: %+v", out[0])
	}
}
