package gateway

import (
	"bytes"
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

	"github.com/sealgate/sealgate/policy"
	"github.com/sealgate/sealgate/queue"
)

// SMTP TLS Reporting (RFC 8460). Every TLS session a delivery tries is
// counted per UTC day, destination domain and policy (MTA-STS, DANE or
// none) in the spool; once the day is over, a domain that publishes
// _smtp._tls with rua= gets the aggregate as gzipped JSON, by mail
// through our own queue or by HTTPS POST. Not reported: failures to fetch
// an MTA-STS policy (sts-policy-fetch-error), which happen before any
// session.

// tlsReporter records sessions and sends the daily reports.
type tlsReporter struct {
	store     *queue.Store
	resolver  *mxResolver
	client    *http.Client // no redirects, configured resolver and roots
	wake      func(id string)
	hostname  string
	org       string
	contact   string
	now       func() time.Time
	logger    *slog.Logger
	keepDays  int // aggregates no report could be delivered for are dropped after this
	checkEach time.Duration
}

// record counts one session outcome for domain under the requirement in
// force.
func (r *tlsReporter) record(domain string, req policy.TLSRequirement, s tlsSession) {
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

// sendDue sends a report for every finished day and domain.
func (r *tlsReporter) sendDue(ctx context.Context) {
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
func (r *tlsReporter) sendReport(ctx context.Context, day, domain string, recs []queue.TLSRPTRecord) (bool, error) {
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
func (r *tlsReporter) lookupRUA(ctx context.Context, domain string) ([]string, error) {
	txts, err := r.resolver.lookupTXT(ctx, "_smtp._tls."+domain)
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

func (r *tlsReporter) postReport(ctx context.Context, url string, gz []byte) error {
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
func (r *tlsReporter) mailReport(ctx context.Context, to, domain, id, day string, gz []byte) error {
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
