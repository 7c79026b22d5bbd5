package store

import (
	"context"
	"errors"
	"time"
)

// Errors callers test for with errors.Is.
var (
	// ErrNotFound: no row with that key.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a row with that unique key is already there (an order
	// with the same idempotency key or generation).
	ErrExists = errors.New("store: already exists")
	// ErrLocked: another certd daemon holds the store.
	ErrLocked = errors.New("store: in use by another certd")
	// ErrSchemaNewer: the store was written by a newer certd.
	ErrSchemaNewer = errors.New("store: schema is newer than this certd")
	// ErrLeaseHeld: another holder has a live lease on the resource.
	ErrLeaseHeld = errors.New("store: lease held by another host")
	// ErrLeaseLost: the lease a write or renewal carries is no longer
	// the resource's current lease (it expired and was granted again, or
	// was released); the write did not happen.
	ErrLeaseLost = errors.New("store: lease lost")
)

// Store is everything certd persists. Backends (SQLite now, PostgreSQL for
// fleets) implement all of it and pass storetest.Run; consumers declare the
// smaller interfaces they need. All methods are safe for concurrent use and
// honour ctx. Times are stored with millisecond precision, in UTC.
type Store interface {
	Certificates
	Claims
	Orders
	Versions
	Artefacts
	Deployments
	Events
	CAAccounts
	AccountHolds
	Passes
	Leases
	Hosts
	Close() error
}

// Passes keeps when the scheduler last completed a pass over what was
// due, so that a reader (certd status, the metrics) can tell a working
// daemon from a stuck or stopped one.
type Passes interface {
	// RecordPass replaces the stored last pass with p.
	RecordPass(ctx context.Context, p Pass) error
	// LastPass returns the last recorded pass of any host, or ErrNotFound
	// when none was ever completed.
	LastPass(ctx context.Context) (Pass, error)
	// ListPasses returns each host's last pass, by host name.
	ListPasses(ctx context.Context) ([]Pass, error)
}

// Pass is one completed pass of the scheduler.
type Pass struct {
	FinishedAt time.Time
	PID        int    // the process that ran it
	Worked     int    // certificates worked in it
	Host       string // the host that ran it ("" on a single host)
}

// AccountHolds keeps, per CA account, the time before which certd sends
// it nothing (a Retry-After), so a restart honours it.
type AccountHolds interface {
	// SetAccountHold inserts or replaces the account's hold; a zero Until
	// lifts it.
	SetAccountHold(ctx context.Context, h AccountHold) error
	// AccountHolds lists every account's hold, lifted ones included.
	AccountHolds(ctx context.Context) ([]AccountHold, error)
}

// AccountHold is a CA account's "not before".
type AccountHold struct {
	Account   string
	Until     time.Time
	Reason    string
	UpdatedAt time.Time
}

// CAAccounts holds what certd generated to act as a CA account (an ACME
// account key) and the CA's reference for it, one per configured account
// and CA endpoint. The store reads nothing into it.
type CAAccounts interface {
	// GetCAAccount returns ErrNotFound when there is none.
	GetCAAccount(ctx context.Context, account, endpoint string) (CAAccount, error)
	// SaveCAAccount inserts or replaces the row for (Account, Endpoint).
	SaveCAAccount(ctx context.Context, a CAAccount) error
}

// CAAccount is one CA account's credentials. KeyPEM is a secret, like
// PrivateKey.PEM.
type CAAccount struct {
	Account  string // the account's name in configuration
	Endpoint string // the CA endpoint (an ACME directory URL)
	KeyPEM   []byte
	// Ref is the CA's reference for the account (an ACME account URL);
	// empty until the CA has it.
	Ref string
	// BindingID is the external binding it was created with (an EAB kid).
	BindingID string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Certificates holds each configured certificate's lifecycle state.
type Certificates interface {
	GetCertificate(ctx context.Context, name string) (Certificate, error)
	// SaveCertificate inserts or replaces the row with c.Name.
	SaveCertificate(ctx context.Context, c Certificate) error
	// InsertCertificate inserts c and fails with ErrExists, writing
	// nothing, when a row with c.Name is there (another host created it
	// first).
	InsertCertificate(ctx context.Context, c Certificate) error
	// UpdateCertificate reads the row named name, lets fn change it and
	// writes it back, all in one transaction: no other write to the row
	// lands between the read and the write, and nothing is written when
	// the read fails (ErrNotFound) or fn returns an error (returned as
	// is). fn may be called more than once on a retried transaction and
	// must not have side effects. Only the lifecycle fields are written
	// (not Name, CreatedAt, Current).
	UpdateCertificate(ctx context.Context, name string, fn func(*Certificate) error) error
	ListCertificates(ctx context.Context) ([]Certificate, error)
	// DueCertificates returns up to limit certificates whose
	// NextActionAt is at or before now, earliest first, by index.
	DueCertificates(ctx context.Context, now time.Time, limit int) ([]Certificate, error)
}

// Certificate is the stored state of one certificate.
type Certificate struct {
	Name     string
	Account  string
	Domains  []string
	KeyType  string
	SpecHash string // hash of what config asks for; a change means reissue
	State    string // see the State* constants
	// CurrentVersion is the id of the deployed version, 0 if none.
	CurrentVersion int64
	// Current is filled by List/Get from CurrentVersion.
	Current *Version

	NextAction   string
	NextActionAt time.Time // zero: nothing scheduled
	Failures     int
	LastError    string
	RetryAfter   time.Time // the CA's Retry-After, honoured across restarts
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// Certificate states.
const (
	StatePending = "pending" // configured, never issued
	StateIssuing = "issuing" // an order is in flight
	StateValid   = "valid"   // deployed and inside its validity
	StateFailing = "failing" // last attempt failed; a retry is scheduled
	StateRetired = "retired" // no longer in the configuration
	// StateNeedsOperator: the CA refused in a way retrying cannot fix
	// (credentials, quota, policy, an order it cannot tell was placed);
	// a person must act. It is re-checked slowly and shown loudly.
	StateNeedsOperator = "needs-operator"
)

// Claims holds account-level domain claims (Atlas).
type Claims interface {
	GetClaim(ctx context.Context, account, domain string) (Claim, error)
	SaveClaim(ctx context.Context, c Claim) error
	// UpdateClaim is UpdateCertificate's contract for a claim.
	UpdateClaim(ctx context.Context, account, domain string, fn func(*Claim) error) error
	ListClaims(ctx context.Context) ([]Claim, error)
	DueClaims(ctx context.Context, now time.Time, limit int) ([]Claim, error)
}

// Claim is a domain claim of an account.
type Claim struct {
	Account      string
	Domain       string
	CAClaimID    string
	Token        string // the current token (published in DNS, not a secret)
	Status       string // the CA's status (PENDING, VERIFIED, ...)
	Method       string
	AssertBy     time.Time
	ExpiresAt    time.Time
	NextAction   string
	NextActionAt time.Time
	Failures     int
	LastError    string
	UpdatedAt    time.Time
}

// Orders is the order journal: an order row (with its key) is written
// before the CA is called, and updated with every result.
type Orders interface {
	// CreateOrder stores the intent and its private key in one durable
	// transaction and returns the order's id. It fails with ErrExists if
	// the idempotency key, or the certificate's generation, is taken.
	CreateOrder(ctx context.Context, o Order, key PrivateKey) (int64, error)
	GetOrder(ctx context.Context, id int64) (Order, error)
	GetOrderByKey(ctx context.Context, idempotencyKey string) (Order, error)
	// LatestOrder is the certificate's order with the highest generation.
	LatestOrder(ctx context.Context, certName string) (Order, error)
	SaveOrder(ctx context.Context, o Order) error
	// OpenOrders lists orders not yet in a terminal state.
	OpenOrders(ctx context.Context) ([]Order, error)
	GetKey(ctx context.Context, id int64) (PrivateKey, error)
}

// Order is one request to a CA.
type Order struct {
	ID             int64
	IdempotencyKey string
	CertName       string
	Account        string
	Generation     int
	KeyID          int64
	CSR            []byte // DER
	SpecHash       string
	State          string // see the Order* constants
	CARef          string // the CA's id for the order (serial, URL, number)
	LastError      string
	NextPollAt     time.Time
	// SentAt is when the order was last handed to the CA, stored before
	// the request goes out (zero: never sent, so the CA cannot have it).
	SentAt    time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Order states. Terminal: issued, failed, abandoned.
const (
	OrderIntent    = "intent"    // stored, not yet sent
	OrderAmbiguous = "ambiguous" // sent, outcome unknown: look up before sending again
	OrderPending   = "pending"   // the CA accepted it; waiting for issuance
	OrderIssued    = "issued"
	OrderFailed    = "failed"
	OrderAbandoned = "abandoned"
)

// Ended reports whether the order is in a terminal state (OpenOrders
// lists the others).
func (o Order) Ended() bool {
	switch o.State {
	case OrderIssued, OrderFailed, OrderAbandoned:
		return true
	}
	return false
}

// PrivateKey is a key certd generated. PEM is the only secret the store
// holds, and only in this table.
type PrivateKey struct {
	ID        int64
	CertName  string
	KeyType   string
	PEM       []byte
	PublicSHA string // hex SHA-256 of the DER SubjectPublicKeyInfo
	CreatedAt time.Time
}

// Versions holds issued certificates.
type Versions interface {
	AddVersion(ctx context.Context, v Version) (int64, error)
	GetVersion(ctx context.Context, id int64) (Version, error)
	ListVersions(ctx context.Context, certName string) ([]Version, error)
}

// Version is one issued certificate with its chain.
type Version struct {
	ID          int64
	CertName    string
	OrderID     int64
	KeyID       int64
	Serial      string
	NotBefore   time.Time
	NotAfter    time.Time
	Fingerprint string // hex SHA-256 of the leaf DER
	CertPEM     []byte
	ChainPEM    []byte
	CreatedAt   time.Time
}

// Artefacts is the DCV journal: every DNS record and token file certd
// creates is written here before it is created.
type Artefacts interface {
	JournalArtefact(ctx context.Context, a Artefact) (int64, error)
	SaveArtefact(ctx context.Context, a Artefact) error
	// LiveArtefacts lists artefacts not yet removed.
	LiveArtefacts(ctx context.Context) ([]Artefact, error)
}

// Artefact is one published DNS record or token file.
type Artefact struct {
	ID        int64
	Owner     string // "cert:<name>" or "claim:<account>/<domain>"
	Kind      string // dns-txt, dns-cname, http-file
	Provider  string // the DNS provider or HTTP target's name in config
	Zone      string
	Name      string // record name or URL path
	Value     string
	State     string // see the Artefact* constants
	Attempts  int
	LastError string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Artefact states.
const (
	ArtefactIntent    = "intent" // journaled; may or may not exist yet
	ArtefactPublished = "published"
	ArtefactRemoved   = "removed"
)

// Deployments records every attempt to put a version in place.
type Deployments interface {
	AddDeployment(ctx context.Context, d Deployment) (int64, error)
	SaveDeployment(ctx context.Context, d Deployment) error
	ListDeployments(ctx context.Context, certName string) ([]Deployment, error)
}

// Deployment is one deploy of a version on one host.
type Deployment struct {
	ID         int64
	Host       string // the host that deployed ("" on a single host)
	CertName   string
	VersionID  int64
	Dir        string
	State      string // started, live, failed, rolled_back
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
}

// Events is the append-only event log. Rows are never updated or deleted.
type Events interface {
	AppendEvent(ctx context.Context, e Event) (int64, error)
	// ListEvents returns events matching f, oldest first.
	ListEvents(ctx context.Context, f EventFilter) ([]Event, error)
}

// Event is one thing that happened, for operators.
type Event struct {
	ID       int64
	At       time.Time
	Level    string // info, warn, error
	Kind     string // stable machine name: issued, deployed, dcv_failed, ...
	CertName string
	Claim    string
	Account  string
	Message  string
	Fields   map[string]string
}

// EventFilter selects events; zero fields match everything.
type EventFilter struct {
	CertName string
	Since    time.Time
	Limit    int // newest Limit events; 0 means all
}
