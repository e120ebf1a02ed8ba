package report

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/sealgate/sealgate/gateway/delivery"
	"github.com/sealgate/sealgate/internal/dnsres"
	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// TLSReportStore is what the reporter needs from the spool: the daily
// aggregates (RecordTLSSession adds one session, TLSRPTBefore lists the
// finished days, DeleteTLSRPT forgets one once reported or too old) and
// Enqueue for reports that go by mail. queue.Store implements it.
type TLSReportStore interface {
	RecordTLSSession(s queue.TLSSession) error
	TLSRPTBefore(day string) ([]queue.TLSRPTRecord, error)
	DeleteTLSRPT(r queue.TLSRPTRecord) error
	Enqueue(ctx context.Context, env queue.Envelope, body []byte) (string, error)
}

// TLSReporterOptions configure a TLSReporter; zero values take the
// documented defaults.
type TLSReporterOptions struct {
	Store    TLSReportStore
	Resolver *dnsres.Resolver
	// Client posts reports to https:// addresses
	// (dnsres.Resolver.HTTPSClient: no redirects).
	Client *http.Client
	// Wake is told the queue ID of a report mail (the scheduler's wake).
	Wake func(id string)
	// Hostname is the submitter; Organization and Contact go into the
	// report (default: the hostname and postmaster@hostname).
	Hostname, Organization, Contact string
	Logger                          *slog.Logger
	// KeepDays: aggregates no report could be delivered for are
	// dropped after this many days (default 7).
	KeepDays int
	// CheckEvery is how often SendDue should run (default 1h).
	CheckEvery time.Duration
}

// TLSReporter records sessions and sends the daily reports.
type TLSReporter struct {
	store     TLSReportStore
	resolver  *dnsres.Resolver
	client    *http.Client
	wake      func(id string)
	hostname  string
	org       string
	contact   string
	now       func() time.Time
	logger    *slog.Logger
	keepDays  int
	checkEach time.Duration
}

// NewTLSReporter returns a reporter.
func NewTLSReporter(o TLSReporterOptions) *TLSReporter {
	r := &TLSReporter{store: o.Store, resolver: o.Resolver, client: o.Client, wake: o.Wake,
		hostname: o.Hostname, org: cmp.Or(o.Organization, o.Hostname), contact: cmp.Or(o.Contact, "postmaster@"+o.Hostname),
		now: time.Now, logger: o.Logger, keepDays: cmp.Or(o.KeepDays, 7), checkEach: cmp.Or(o.CheckEvery, time.Hour)}
	if r.wake == nil {
		r.wake = func(string) {}
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	return r
}

// CheckEvery is how often SendDue should run.
func (r *TLSReporter) CheckEvery() time.Duration { return r.checkEach }

// Record counts one session outcome for domain under the requirement in
// force.
func (r *TLSReporter) Record(domain string, req policy.TLSRequirement, s delivery.TLSSession) {
	sess := queue.TLSSession{
		Day: r.now().UTC().Format(time.DateOnly), Domain: domain, PolicyType: "no-policy-found",
		MXHosts: []string{s.Host}, OK: s.OK,
		Failure: queue.TLSRPTFailure{ResultType: s.Result, ReceivingMX: s.Host, ReceivingIP: s.IP},
	}
	switch {
	case len(s.DANE) > 0:
		sess.PolicyType = "tlsa"
		for _, rec := range s.DANE {
			sess.PolicyString = append(sess.PolicyString, rec.String())
		}
	case req.MTASTS != nil:
		sess.PolicyType = "sts"
		p := req.MTASTS
		sess.PolicyString = []string{"version: STSv1", "mode: " + string(p.Mode)}
		for _, mx := range p.MX {
			sess.PolicyString = append(sess.PolicyString, "mx: "+mx)
		}
		sess.PolicyString = append(sess.PolicyString, fmt.Sprintf("max_age: %d", int64(p.MaxAge/time.Second)))
	}
	if err := r.store.RecordTLSSession(sess); err != nil {
		r.logger.Error("TLSRPT: cannot record session", "domain", domain, "err", err)
	}
}

// SendDue sends a report for every finished day and domain.
func (r *TLSReporter) SendDue(ctx context.Context) {
	today := r.now().UTC().Format(time.DateOnly)
	recs, err := r.store.TLSRPTBefore(today)
	if err != nil {
		r.logger.Error("TLSRPT: cannot read aggregates", "err", err)
		return
	}
	type dayDomain struct{ day, domain string }
	groups := map[dayDomain][]queue.TLSRPTRecord{}
	var order []dayDomain
	for _, rec := range recs {
		k := dayDomain{rec.Day, rec.Domain}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], rec)
	}
	cutoff := r.now().UTC().AddDate(0, 0, -r.keepDays).Format(time.DateOnly)
	for _, k := range order {
		sent, err := r.sendReport(ctx, k.day, k.domain, groups[k])
		if err != nil {
			r.logger.Warn("TLSRPT: report not sent", "domain", k.domain, "day", k.day, "err", err)
		}
		if sent || err == nil || k.day < cutoff {
			for _, rec := range groups[k] {
				r.store.DeleteTLSRPT(rec)
			}
		}
	}
}

// sendReport sends one domain's report for one day to every rua address
// it publishes. It reports sent=false, err=nil when the domain asks for
// no reports.
func (r *TLSReporter) sendReport(ctx context.Context, day, domain string, recs []queue.TLSRPTRecord) (bool, error) {
	ruas, err := r.lookupRUA(ctx, domain)
	if err != nil || len(ruas) == 0 {
		return false, err
	}
	report, id := buildTLSReport(r.org, r.contact, r.hostname, day, domain, recs)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if err := json.NewEncoder(zw).Encode(report); err != nil {
		return false, err
	}
	if err := zw.Close(); err != nil {
		return false, err
	}
	var errs []string
	sent := false
	for _, rua := range ruas {
		var err error
		switch {
		case strings.HasPrefix(rua, "mailto:"):
			err = r.mailReport(ctx, strings.TrimPrefix(rua, "mailto:"), domain, id, day, gz.Bytes())
		case strings.HasPrefix(rua, "https://"):
			err = r.postReport(ctx, rua, gz.Bytes())
		default:
			err = fmt.Errorf("unsupported rua %q", rua)
		}
		if err != nil {
			errs = append(errs, rua+": "+err.Error())
			continue
		}
		sent = true
		r.logger.Info("TLSRPT report sent", "domain", domain, "day", day, "to", rua, "report_id", id)
	}
	if len(errs) > 0 {
		return sent, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return sent, nil
}

// lookupRUA reads _smtp._tls.<domain> (RFC 8460 §3).
func (r *TLSReporter) lookupRUA(ctx context.Context, domain string) ([]string, error) {
	txts, err := r.resolver.TXT(ctx, "_smtp._tls."+domain)
	if err != nil {
		return nil, err
	}
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=TLSRPTv1") {
			continue
		}
		for field := range strings.SplitSeq(t, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(field), "=")
			if ok && strings.TrimSpace(k) == "rua" {
				var out []string
				for u := range strings.SplitSeq(v, ",") {
					if u = strings.TrimSpace(u); u != "" {
						out = append(out, u)
					}
				}
				return out, nil
			}
		}
	}
	return nil, nil
}

func (r *TLSReporter) postReport(ctx context.Context, url string, gz []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(gz))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// mailReport queues the report as RFC 8460 §5.3 describes: a
// multipart/report of report-type tlsrpt with the gzipped JSON attached.
func (r *TLSReporter) mailReport(ctx context.Context, to, domain, id, day string, gz []byte) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	var msg bytes.Buffer
	fmt.Fprintf(&msg, "From: TLS Reporting <noreply-tlsrpt@%s>\r\n", r.hostname)
	fmt.Fprintf(&msg, "To: <%s>\r\n", to)
	fmt.Fprintf(&msg, "Subject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n", domain, r.hostname, id)
	fmt.Fprintf(&msg, "Date: %s\r\n", r.now().Format(time.RFC1123Z))
	fmt.Fprintf(&msg, "Message-ID: <%s>\r\n", id)
	fmt.Fprintf(&msg, "TLS-Report-Domain: %s\r\nTLS-Report-Submitter: %s\r\n", domain, r.hostname)
	fmt.Fprintf(&msg, "Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n")
	fmt.Fprintf(&msg, "Content-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=%q\r\n\r\n", mw.Boundary())
	text, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"text/plain; charset=us-ascii"}})
	fmt.Fprintf(text, "This is an aggregate TLS report from %s for %s, %s (UTC).\r\n", r.hostname, domain, day)
	att, _ := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"application/tlsrpt+gzip"},
		"Content-Transfer-Encoding": {"base64"},
		"Content-Disposition":       {fmt.Sprintf("attachment; filename=\"%s!%s!%s.json.gz\"", r.hostname, domain, day)},
	})
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		fmt.Fprintf(att, "%s\r\n", enc[:76])
		enc = enc[76:]
	}
	fmt.Fprintf(att, "%s\r\n", enc)
	mw.Close()
	msg.Write(body.Bytes())
	qid, err := r.store.Enqueue(ctx, queue.Envelope{From: "", Recipients: []string{to}}, msg.Bytes())
	if err != nil {
		return err
	}
	r.wake(qid)
	return nil
}

// tlsReport is the RFC 8460 §4.4 JSON report.
type tlsReport struct {
	OrganizationName string           `json:"organization-name"`
	DateRange        tlsReportRange   `json:"date-range"`
	ContactInfo      string           `json:"contact-info"`
	ReportID         string           `json:"report-id"`
	Policies         []tlsReportEntry `json:"policies"`
}

type tlsReportRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

type tlsReportEntry struct {
	Policy struct {
		PolicyType   string   `json:"policy-type"`
		PolicyString []string `json:"policy-string,omitempty"`
		PolicyDomain string   `json:"policy-domain"`
		MXHost       []string `json:"mx-host,omitempty"`
	} `json:"policy"`
	Summary struct {
		Successful int64 `json:"total-successful-session-count"`
		Failed     int64 `json:"total-failure-session-count"`
	} `json:"summary"`
	FailureDetails []tlsReportFailure `json:"failure-details,omitempty"`
}

type tlsReportFailure struct {
	ResultType          string `json:"result-type"`
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP         string `json:"receiving-ip,omitempty"`
	FailedSessionCount  int64  `json:"failed-session-count"`
}

func buildTLSReport(org, contact, hostname, day, domain string, recs []queue.TLSRPTRecord) (tlsReport, string) {
	start, _ := time.Parse(time.DateOnly, day)
	id := fmt.Sprintf("%s.%s.%s@%s", day, domain, randomToken(6), hostname)
	rep := tlsReport{
		OrganizationName: org,
		DateRange:        tlsReportRange{Start: start.UTC(), End: start.UTC().Add(24*time.Hour - time.Second)},
		ContactInfo:      contact,
		ReportID:         id,
	}
	for _, rec := range recs {
		var e tlsReportEntry
		e.Policy.PolicyType, e.Policy.PolicyString, e.Policy.PolicyDomain, e.Policy.MXHost =
			rec.PolicyType, rec.PolicyString, domain, rec.MXHosts
		e.Summary.Successful, e.Summary.Failed = rec.Successes, rec.Failures
		for _, f := range rec.Details {
			e.FailureDetails = append(e.FailureDetails, tlsReportFailure{
				ResultType: f.ResultType, ReceivingMXHostname: f.ReceivingMX, ReceivingIP: f.ReceivingIP, FailedSessionCount: f.Count,
			})
		}
		rep.Policies = append(rep.Policies, e)
	}
	return rep, id
}
