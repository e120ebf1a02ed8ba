# Independent DKIM verification with dkimpy (python3-dkim), for the
# interoperability test: verifies every DKIM-Signature of the message in
# argv[1] against the TXT records given as selector._domainkey.domain=record
# arguments, and prints one line per signature. Exit 0 only when all pass.
import sys
import dkim

msg = open(sys.argv[1], "rb").read()
records = {}
for arg in sys.argv[2:]:
    name, record = arg.split("=", 1)
    records[name.encode() + b"."] = record.encode()
    records[name.encode()] = record.encode()

def dnsfunc(name, timeout=5):
    return records.get(name, None)

d = dkim.DKIM(msg)
count = msg.split(b"\r\n\r\n", 1)[0].lower().count(b"\ndkim-signature:") + msg.lower().startswith(b"dkim-signature:")
ok = count > 0
for i in range(count):
    good = d.verify(idx=i, dnsfunc=dnsfunc)
    print("signature %d: %s" % (i, "pass" if good else "fail"))
    ok = ok and good
sys.exit(0 if ok else 1)
