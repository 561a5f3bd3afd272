package ocsf

// The OCSF attributes this package emits, named as in the OCSF dictionary. Optional
// attributes use omitempty; required ones do not.

type detectionFinding struct {
	ActivityID   int               `json:"activity_id"`
	ActivityName string            `json:"activity_name"`
	CategoryUID  int               `json:"category_uid"`
	CategoryName string            `json:"category_name"`
	ClassUID     int               `json:"class_uid"`
	ClassName    string            `json:"class_name"`
	TypeUID      int               `json:"type_uid"`
	TypeName     string            `json:"type_name"`
	SeverityID   int               `json:"severity_id"`
	Severity     string            `json:"severity"`
	StatusID     int               `json:"status_id"`
	Status       string            `json:"status"`
	IsAlert      bool              `json:"is_alert"`
	Time         int64             `json:"time"`
	StartTime    int64             `json:"start_time,omitempty"`
	EndTime      int64             `json:"end_time,omitempty"`
	Message      string            `json:"message,omitempty"`
	Metadata     metadataObj       `json:"metadata"`
	FindingInfo  findingInfo       `json:"finding_info"`
	Resources    []resourceDetails `json:"resources,omitempty"`
	Evidences    []evidence        `json:"evidences,omitempty"`
	Remediation  *remediation      `json:"remediation,omitempty"`
	Cloud        *cloudObj         `json:"cloud,omitempty"`
	Unmapped     map[string]any    `json:"unmapped,omitempty"`
}

type apiActivity struct {
	ActivityID   int               `json:"activity_id"`
	ActivityName string            `json:"activity_name"`
	CategoryUID  int               `json:"category_uid"`
	CategoryName string            `json:"category_name"`
	ClassUID     int               `json:"class_uid"`
	ClassName    string            `json:"class_name"`
	TypeUID      int               `json:"type_uid"`
	TypeName     string            `json:"type_name"`
	SeverityID   int               `json:"severity_id"`
	Severity     string            `json:"severity"`
	StatusID     int               `json:"status_id"`
	Status       string            `json:"status"`
	StatusCode   string            `json:"status_code,omitempty"`
	StatusDetail string            `json:"status_detail,omitempty"`
	Time         int64             `json:"time"`
	Message      string            `json:"message,omitempty"`
	Metadata     metadataObj       `json:"metadata"`
	Actor        actor             `json:"actor"`
	API          api               `json:"api"`
	SrcEndpoint  endpoint          `json:"src_endpoint"`
	HTTPRequest  *httpRequest      `json:"http_request,omitempty"`
	Resources    []resourceDetails `json:"resources,omitempty"`
	Cloud        *cloudObj         `json:"cloud,omitempty"`
	Unmapped     map[string]any    `json:"unmapped,omitempty"`
}

type accountChange struct {
	ActivityID   int          `json:"activity_id"`
	ActivityName string       `json:"activity_name"`
	CategoryUID  int          `json:"category_uid"`
	CategoryName string       `json:"category_name"`
	ClassUID     int          `json:"class_uid"`
	ClassName    string       `json:"class_name"`
	TypeUID      int          `json:"type_uid"`
	TypeName     string       `json:"type_name"`
	SeverityID   int          `json:"severity_id"`
	Severity     string       `json:"severity"`
	StatusID     int          `json:"status_id"`
	Status       string       `json:"status"`
	StatusCode   string       `json:"status_code,omitempty"`
	Time         int64        `json:"time"`
	Message      string       `json:"message,omitempty"`
	Metadata     metadataObj  `json:"metadata"`
	User         *user        `json:"user"`
	Actor        *actor       `json:"actor,omitempty"`
	Policy       *policy      `json:"policy,omitempty"`
	SrcEndpoint  *endpoint    `json:"src_endpoint,omitempty"`
	HTTPRequest  *httpRequest `json:"http_request,omitempty"`
	Cloud        *cloudObj    `json:"cloud,omitempty"`
}

type product struct {
	Name       string `json:"name,omitempty"`
	VendorName string `json:"vendor_name"`
	Version    string `json:"version,omitempty"`
}

type metadataObj struct {
	Product        product  `json:"product"`
	Version        string   `json:"version"`
	UID            string   `json:"uid,omitempty"`
	CorrelationUID string   `json:"correlation_uid,omitempty"`
	EventCode      string   `json:"event_code,omitempty"`
	LogName        string   `json:"log_name,omitempty"`
	LoggedTime     int64    `json:"logged_time,omitempty"`
	OriginalTime   string   `json:"original_time,omitempty"`
	Profiles       []string `json:"profiles,omitempty"`
}

type accountObj struct {
	UID    string `json:"uid,omitempty"`
	Name   string `json:"name,omitempty"`
	Type   string `json:"type,omitempty"`
	TypeID int    `json:"type_id,omitempty"`
}

type cloudObj struct {
	Provider   string      `json:"provider"`
	Region     string      `json:"region,omitempty"`
	ProjectUID string      `json:"project_uid,omitempty"`
	Account    *accountObj `json:"account,omitempty"`
}

type group struct {
	Name string `json:"name,omitempty"`
	UID  string `json:"uid,omitempty"`
}

type user struct {
	UID     string      `json:"uid,omitempty"`
	Name    string      `json:"name,omitempty"`
	Type    string      `json:"type,omitempty"`
	TypeID  int         `json:"type_id,omitempty"`
	Account *accountObj `json:"account,omitempty"`
	Groups  []group     `json:"groups,omitempty"`
}

type session struct {
	UID           string `json:"uid,omitempty"`
	Issuer        string `json:"issuer,omitempty"`
	CredentialUID string `json:"credential_uid,omitempty"`
	CreatedTime   int64  `json:"created_time,omitempty"`
	IsMFA         bool   `json:"is_mfa,omitempty"`
}

type actor struct {
	User      *user    `json:"user,omitempty"`
	Session   *session `json:"session,omitempty"`
	InvokedBy string   `json:"invoked_by,omitempty"`
	AppName   string   `json:"app_name,omitempty"`
}

type endpoint struct {
	IP       string `json:"ip,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Name     string `json:"name,omitempty"`
	UID      string `json:"uid,omitempty"`
}

type service struct {
	Name string `json:"name,omitempty"`
}

type apiRequest struct {
	UID string `json:"uid"`
}

type apiResponse struct {
	Code         int    `json:"code,omitempty"`
	Error        string `json:"error,omitempty"`
	ErrorMessage string `json:"error_message,omitempty"`
}

type api struct {
	Operation string       `json:"operation"`
	Version   string       `json:"version,omitempty"`
	Service   *service     `json:"service,omitempty"`
	Request   *apiRequest  `json:"request,omitempty"`
	Response  *apiResponse `json:"response,omitempty"`
}

type httpRequest struct {
	UserAgent string `json:"user_agent,omitempty"`
}

type technique struct {
	UID    string `json:"uid"`
	Name   string `json:"name,omitempty"`
	SrcURL string `json:"src_url,omitempty"`
}

type attack struct {
	Technique    *technique `json:"technique,omitempty"`
	SubTechnique *technique `json:"sub_technique,omitempty"`
	Version      string     `json:"version,omitempty"`
}

type analytic struct {
	TypeID int    `json:"type_id"`
	Type   string `json:"type,omitempty"`
	Name   string `json:"name,omitempty"`
	UID    string `json:"uid,omitempty"`
}

type relatedEvent struct {
	UID string `json:"uid"`
}

type findingInfo struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	Desc          string         `json:"desc,omitempty"`
	Types         []string       `json:"types,omitempty"`
	Analytic      *analytic      `json:"analytic,omitempty"`
	Attacks       []attack       `json:"attacks,omitempty"`
	CreatedTime   int64          `json:"created_time,omitempty"`
	ModifiedTime  int64          `json:"modified_time,omitempty"`
	FirstSeenTime int64          `json:"first_seen_time,omitempty"`
	LastSeenTime  int64          `json:"last_seen_time,omitempty"`
	RelatedEvents []relatedEvent `json:"related_events,omitempty"`
	DataSources   []string       `json:"data_sources,omitempty"`
	SrcURL        string         `json:"src_url,omitempty"`
}

type remediation struct {
	Desc       string   `json:"desc"`
	References []string `json:"references,omitempty"`
}

type resourceDetails struct {
	UID       string   `json:"uid,omitempty"`
	Name      string   `json:"name,omitempty"`
	Type      string   `json:"type,omitempty"`
	Region    string   `json:"region,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Owner     *user    `json:"owner,omitempty"`
	Group     *group   `json:"group,omitempty"`
	Labels    []string `json:"labels,omitempty"`
}

type evidence struct {
	Actor       *actor         `json:"actor,omitempty"`
	API         *api           `json:"api,omitempty"`
	SrcEndpoint *endpoint      `json:"src_endpoint,omitempty"`
	Data        map[string]any `json:"data,omitempty"`
}

type policy struct {
	Name      string         `json:"name,omitempty"`
	UID       string         `json:"uid,omitempty"`
	IsApplied bool           `json:"is_applied"`
	Data      map[string]any `json:"data,omitempty"`
}
