package resellersim

// Wire shapes as the simulator reads and writes them, kept apart from the
// client's own types so that a mistake in one is caught by the other.
// The request bodies are the seed's field lists exactly: any other field
// is refused.

type createBody struct {
	CSR                  string  `json:"csr"`
	DCVType              string  `json:"dcv_type"`
	ChamberOfCommerce    string  `json:"chamber_of_commerce"`
	CompanyName          string  `json:"company_name"`
	Department           string  `json:"department"`
	Address              string  `json:"address"`
	City                 string  `json:"city"`
	ApproverFirstName    string  `json:"approver_first_name"`
	ApproverLastName     string  `json:"approver_last_name"`
	ApproverEmailAddress string  `json:"approver_email_address"`
	ApproverPhoneNumber  string  `json:"approver_phone_number"`
	ZipCode              string  `json:"zip_code"`
	Plan                 string  `json:"plan"`
	ClientReference      *string `json:"client_reference"`
	EEReferenceOrderID   string  `json:"ee_reference_order_id"`
}

// renewBody is create's minus ee_reference_order_id.
type renewBody struct {
	CSR                  string  `json:"csr"`
	DCVType              string  `json:"dcv_type"`
	ChamberOfCommerce    string  `json:"chamber_of_commerce"`
	CompanyName          string  `json:"company_name"`
	Department           string  `json:"department"`
	Address              string  `json:"address"`
	City                 string  `json:"city"`
	ApproverFirstName    string  `json:"approver_first_name"`
	ApproverLastName     string  `json:"approver_last_name"`
	ApproverEmailAddress string  `json:"approver_email_address"`
	ApproverPhoneNumber  string  `json:"approver_phone_number"`
	ZipCode              string  `json:"zip_code"`
	Plan                 string  `json:"plan"`
	ClientReference      *string `json:"client_reference"`
}

// reissueBody is create's minus plan and ee_reference_order_id.
type reissueBody struct {
	CSR                  string  `json:"csr"`
	DCVType              string  `json:"dcv_type"`
	ChamberOfCommerce    string  `json:"chamber_of_commerce"`
	CompanyName          string  `json:"company_name"`
	Department           string  `json:"department"`
	Address              string  `json:"address"`
	City                 string  `json:"city"`
	ApproverFirstName    string  `json:"approver_first_name"`
	ApproverLastName     string  `json:"approver_last_name"`
	ApproverEmailAddress string  `json:"approver_email_address"`
	ApproverPhoneNumber  string  `json:"approver_phone_number"`
	ZipCode              string  `json:"zip_code"`
	ClientReference      *string `json:"client_reference"`
}

func (b renewBody) create() createBody {
	return createBody{CSR: b.CSR, DCVType: b.DCVType, ChamberOfCommerce: b.ChamberOfCommerce, CompanyName: b.CompanyName,
		Department: b.Department, Address: b.Address, City: b.City, ApproverFirstName: b.ApproverFirstName,
		ApproverLastName: b.ApproverLastName, ApproverEmailAddress: b.ApproverEmailAddress, ApproverPhoneNumber: b.ApproverPhoneNumber,
		ZipCode: b.ZipCode, Plan: b.Plan, ClientReference: b.ClientReference}
}

func (b reissueBody) create() createBody {
	return createBody{CSR: b.CSR, DCVType: b.DCVType, ChamberOfCommerce: b.ChamberOfCommerce, CompanyName: b.CompanyName,
		Department: b.Department, Address: b.Address, City: b.City, ApproverFirstName: b.ApproverFirstName,
		ApproverLastName: b.ApproverLastName, ApproverEmailAddress: b.ApproverEmailAddress, ApproverPhoneNumber: b.ApproverPhoneNumber,
		ZipCode: b.ZipCode, ClientReference: b.ClientReference}
}

type validateBody struct {
	DCVType      string `json:"dcv_type"`
	EmailAddress string `json:"email_address"`
	Domain       string `json:"domain"`
}

// objectJSON is the SSL Certificate object. Its schema is not documented;
// these keys are the simulator's inference (see the package doc).
type objectJSON struct {
	ID              string   `json:"id"`
	Status          string   `json:"status"`
	Plan            string   `json:"plan"`
	ClientReference *string  `json:"client_reference"`
	CommonName      string   `json:"common_name"`
	Domains         []string `json:"domains"`
	DCVType         string   `json:"dcv_type"`
	CreatedAt       string   `json:"created_at"`
	UpdatedAt       string   `json:"updated_at"`
	ValidFrom       *string  `json:"valid_from"`
	ValidUntil      *string  `json:"valid_until"`
}

// page is Django REST Framework's paginated listing.
type page struct {
	Count    int          `json:"count"`
	Next     *string      `json:"next"`
	Previous *string      `json:"previous"`
	Results  []objectJSON `json:"results"`
}
