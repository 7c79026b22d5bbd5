package atlassim

// Wire shapes of HVCA v2 as the simulator reads and writes them. They are
// kept apart from the client's own types on purpose, so that a mistake in
// one is caught by the other instead of being shared.

type loginRequest struct {
	APIKey    string `json:"api_key"`
	APISecret string `json:"api_secret"`
}

type problem struct {
	Description string            `json:"description"`
	ID          string            `json:"id,omitempty"`
	Errors      map[string]string `json:"errors,omitempty"`
}

type claimLogEntry struct {
	Status      string `json:"status"`
	Description string `json:"description"`
	Timestamp   int64  `json:"timestamp"`
	Method      string `json:"method,omitempty"`
}

type claimJSON struct {
	ID        string          `json:"id"`
	Status    string          `json:"status"`
	Domain    string          `json:"domain"`
	CreatedAt int64           `json:"created_at"`
	ExpiresAt int64           `json:"expires_at"`
	AssertBy  int64           `json:"assert_by"`
	Log       []claimLogEntry `json:"log"`
}

type claimToken struct {
	Token    string `json:"token"`
	AssertBy int64  `json:"assert_by"`
}

type certRequest struct {
	Validity struct {
		NotBefore int64 `json:"not_before"`
		NotAfter  int64 `json:"not_after"`
	} `json:"validity"`
	SubjectDN          map[string]any `json:"subject_dn"`
	SAN                *sanJSON       `json:"san,omitempty"`
	ExtendedKeyUsages  []string       `json:"extended_key_usages,omitempty"`
	PublicKey          string         `json:"public_key"`
	PublicKeySignature string         `json:"public_key_signature,omitempty"`
	Signature          map[string]any `json:"signature,omitempty"`
	CustomExtensions   map[string]any `json:"custom_extensions,omitempty"`
}

type sanJSON struct {
	DNSNames    []string `json:"dns_names,omitempty"`
	Emails      []string `json:"emails,omitempty"`
	IPAddresses []string `json:"ip_addresses,omitempty"`
	URIs        []string `json:"uris,omitempty"`
}

type rekeyRequest struct {
	PublicKey          string `json:"public_key"`
	PublicKeySignature string `json:"public_key_signature,omitempty"`
}

type revokeRequest struct {
	RevocationReason string `json:"revocation_reason"`
	RevocationTime   int64  `json:"revocation_time,omitempty"`
}

type certJSON struct {
	Certificate string `json:"certificate"`
	Status      string `json:"status"`
	UpdatedAt   int64  `json:"updated_at"`
}

type statEntry struct {
	SerialNumber string `json:"serial_number"`
	NotBefore    int64  `json:"not_before"`
	NotAfter     int64  `json:"not_after"`
}

type value struct {
	Value int `json:"value"`
}

// Policy is the validation policy the simulator serves and enforces: a DV
// TLS policy in the shape of GET /validationpolicy.
type Policy struct {
	Validity struct {
		SecondsMin            int64 `json:"secondsmin"`
		SecondsMax            int64 `json:"secondsmax"`
		NotBeforeNegativeSkew int64 `json:"not_before_negative_skew"`
		NotBeforePositiveSkew int64 `json:"not_before_positive_skew"`
		IssuerExpiry          int64 `json:"issuer_expiry"`
	} `json:"validity"`
	SubjectDN map[string]StringPolicy `json:"subject_dn"`
	SAN       struct {
		DNSNames    ListPolicy `json:"dns_names"`
		Emails      ListPolicy `json:"emails"`
		IPAddresses ListPolicy `json:"ip_addresses"`
		URIs        ListPolicy `json:"uris"`
	} `json:"san"`
	ExtendedKeyUsages struct {
		EKUs     ListPolicy `json:"ekus"`
		Critical bool       `json:"critical"`
	} `json:"extended_key_usages"`
	PublicKey struct {
		KeyType        string `json:"key_type"`
		AllowedLengths []int  `json:"allowed_lengths"`
		KeyFormat      string `json:"key_format"`
	} `json:"public_key"`
	PublicKeySignature string `json:"public_key_signature"`
}

// StringPolicy is a subject attribute's rule.
type StringPolicy struct {
	Presence string `json:"presence"`
	Format   string `json:"format,omitempty"`
}

// ListPolicy is a list's rule: entries match one of List (regexes), count
// within [MinCount, MaxCount].
type ListPolicy struct {
	Static   bool     `json:"static"`
	List     []string `json:"list"`
	MinCount int      `json:"mincount"`
	MaxCount int      `json:"maxcount"`
}

// DefaultPolicy is a DV TLS policy: a common name and 1-100 DNS names, no
// organisation, ECDSA P-256/P-384 keys as SPKI with a proof of possession,
// validity from one hour to 397 days.
func DefaultPolicy() Policy {
	var p Policy
	p.Validity.SecondsMin = 3600
	p.Validity.SecondsMax = 397 * 24 * 3600
	p.Validity.NotBeforeNegativeSkew = 120
	p.Validity.NotBeforePositiveSkew = 120
	p.SubjectDN = map[string]StringPolicy{
		"common_name":  {Presence: "REQUIRED", Format: `^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`},
		"organization": {Presence: "FORBIDDEN"},
		"country":      {Presence: "STATIC"},
	}
	p.SAN.DNSNames = ListPolicy{List: []string{`^(\*\.)?[a-z0-9.-]+$`}, MinCount: 1, MaxCount: 100}
	p.SAN.Emails = ListPolicy{MaxCount: 0}
	p.SAN.IPAddresses = ListPolicy{MaxCount: 0}
	p.SAN.URIs = ListPolicy{MaxCount: 0}
	p.ExtendedKeyUsages.EKUs = ListPolicy{Static: true, List: []string{"1.3.6.1.5.5.7.3.1"}, MinCount: 1, MaxCount: 1}
	p.PublicKey.KeyType = "ECDSA"
	p.PublicKey.AllowedLengths = []int{256, 384}
	p.PublicKey.KeyFormat = "PKCS8"
	p.PublicKeySignature = "REQUIRED"
	return p
}
