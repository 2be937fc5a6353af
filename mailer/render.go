package mailer

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"time"

	"selfreset/domain"
	"selfreset/links"
)

//go:embed templates/*
var templateFiles embed.FS

// Kinds of mail. They are stored in mail_deliveries.kind.
const (
	MailEmailCode       = "email_code"       // RecoveryEmailCodeSent: the 6-digit verification code
	MailResetToken      = "reset_token"      // ResetTokenIssued: the password token
	MailResetError      = "reset_error"      // ResetRequestRejected with NotifyEmail: "Password Reset Error"
	MailResetNotice     = "reset_notice"     // ResetRequestRejected with NoticeEmail: the fixed reasons text
	MailPasswordChanged = "password_changed" // PasswordChanged with NotifyEmail
)

// Subjects of the mails, by kind.
var Subjects = map[string]string{
	MailEmailCode:       "Your Self Password Reset verification code",
	MailResetToken:      "Your password token",
	MailResetError:      "Password Reset Error",
	MailResetNotice:     "Password Reset Error",
	MailPasswordChanged: "Your password was changed",
}

// Paths says how emails link to pages. The page paths themselves are package links', the
// same constants package http routes.
type Paths struct {
	// ResetLink, when set, makes the token email link to links.ChangePasswordFor(the id it
	// returns) (reset.LinkID with the server keyring): an opaque, encrypted, expiring
	// reference that opens the Change Password page on any device, no cookie needed.
	// Unset, the link is the bare Change Password page, which explains where to go.
	ResetLink func(provider, login, email string, issuedAt time.Time) string
}

// Renderer turns a delivery and its secret value into subject, text and HTML bodies.
type Renderer struct {
	publicURL string
	paths     Paths
	text      map[string]*texttemplate.Template
	html      map[string]*htmltemplate.Template
}

// NewRenderer parses the embedded templates. publicURL is the validated
// Config.PublicURL; links are built from it alone.
func NewRenderer(publicURL string, paths Paths) (*Renderer, error) {
	u, err := ParsePublicURL(publicURL)
	if err != nil {
		return nil, fmt.Errorf("mailer: public URL: %w", err)
	}
	r := &Renderer{publicURL: u, paths: paths, text: map[string]*texttemplate.Template{}, html: map[string]*htmltemplate.Template{}}
	for kind := range Subjects {
		t, err := texttemplate.New(kind).Option("missingkey=error").ParseFS(templateFiles, "templates/footer.txt", "templates/"+kind+".txt")
		if err != nil {
			return nil, fmt.Errorf("mailer: template %s.txt: %w", kind, err)
		}
		h, err := htmltemplate.New(kind).Option("missingkey=error").ParseFS(templateFiles, "templates/layout.html", "templates/"+kind+".html")
		if err != nil {
			return nil, fmt.Errorf("mailer: template %s.html: %w", kind, err)
		}
		r.text[kind], r.html[kind] = t, h
	}
	return r, nil
}

// mailData is what the templates see.
type mailData struct {
	Subject           string
	Provider          string
	Login             string
	Value             string // the token or code; empty for other mails
	ValidFor          string // "5 minutes"
	ExpiresAt         string
	When              string   // when the event happened
	Reason            string   // reset_error: why, in the seed's words
	Hint              string   // reset_error: what to do about it
	Method            string   // password_changed: how ("using Self Password Reset")
	RetryAt           string   // reset_error: when the owner may ask again ("" when at once)
	Reasons           []string // reset_notice: the seed's reasons, every one
	LoginURL          string
	ForgotPasswordURL string
	ChangePasswordURL string
}

// Render produces the subject and bodies of d. value is the derived token or code (empty
// for mails without one).
func (r *Renderer) Render(d Delivery, value string) (subject, text, html string, err error) {
	tt, ok := r.text[d.Kind]
	if !ok {
		return "", "", "", fmt.Errorf("mailer: no template for mail kind %q", d.Kind)
	}
	if (d.SecretID != "") != (value != "") {
		return "", "", "", fmt.Errorf("mailer: %s mail for event %s: secret value missing or unexpected", d.Kind, d.EventID)
	}
	provider, login := streamAccount(d.Stream)
	data := mailData{
		Subject:           Subjects[d.Kind],
		Provider:          provider,
		Login:             login,
		Value:             value,
		When:              formatTime(d.OccurredAt),
		LoginURL:          r.publicURL + links.Login,
		ForgotPasswordURL: r.publicURL + links.ForgotPassword,
		ChangePasswordURL: r.publicURL + links.ChangePassword,
	}
	// Only the token email links to its request; nothing readable goes in the link.
	if d.Kind == MailResetToken && provider != "" && login != "" && r.paths.ResetLink != nil {
		data.ChangePasswordURL = r.publicURL + links.ChangePasswordFor(r.paths.ResetLink(provider, login, d.Recipient, d.OccurredAt))
	}
	if !d.ExpiresAt.IsZero() {
		data.ExpiresAt = formatTime(d.ExpiresAt)
		data.ValidFor = humanDuration(d.ExpiresAt.Sub(d.OccurredAt))
	}
	switch d.Kind {
	case MailResetError:
		data.Reason, data.Hint = reasonText(domain.Reason(d.Reason))
		data.RetryAt = formatTime(d.RetryAt)
	case MailResetNotice:
		data.Reasons = domain.ResetErrorReasons
	case MailPasswordChanged:
		switch d.Reason {
		case domain.PasswordChangedBySelfReset:
			data.Method = "using Self Password Reset"
		case domain.PasswordChangedBySelf:
			data.Method = "in Settings, while signed in"
		}
	}
	var tb, hb bytes.Buffer
	if err := tt.ExecuteTemplate(&tb, d.Kind+".txt", data); err != nil {
		return "", "", "", fmt.Errorf("mailer: render %s text: %w", d.Kind, err)
	}
	if err := r.html[d.Kind].ExecuteTemplate(&hb, "layout", data); err != nil {
		return "", "", "", fmt.Errorf("mailer: render %s html: %w", d.Kind, err)
	}
	return data.Subject, tb.String(), hb.String(), nil
}

// streamAccount names the account of a user stream ("", "" for other streams).
func streamAccount(stream string) (provider, login string) {
	p, l, err := domain.ParseUserStream(stream)
	if err != nil {
		return "", ""
	}
	return p, l
}

const contactAdmin = "Please contact your User Administrator."

// reasonText maps a recorded refusal reason to the seed's words and a next step.
func reasonText(code domain.Reason) (reason, hint string) {
	msg := "Self Password Reset could not issue a Password token for this account"
	if e, ok := domain.RequestRefusal(code); ok {
		msg = e.Message
	}
	switch code {
	case domain.ReasonNotConfigured:
		hint = "Configure Self Password Reset from the Settings tab (Configure, beside Self Password Reset), then try again."
	case domain.ReasonResendAfterExpiry:
		hint = "" // the message already says what to do
	case domain.ReasonNoActiveToken:
		hint = "Go back to the login page and click Forgot Password? to receive a new Password token."
	case domain.ReasonThrottled:
		hint = "Too many Password tokens were asked for in a short time."
	default:
		hint = contactAdmin
	}
	return domain.UpperFirst(strings.TrimRight(msg, ".")), hint
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("Mon, 2 Jan 2006 at 15:04 UTC")
}

// humanDuration says "5 minutes", "10 minutes", "90 seconds".
func humanDuration(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d <= 0:
		return "a short time"
	case d%time.Hour == 0:
		return plural(int64(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return plural(int64(d/time.Minute), "minute")
	default:
		return plural(int64((d+time.Second/2)/time.Second), "second")
	}
}
