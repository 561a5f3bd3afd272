package awstest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// CloudTrail serves the LookupEvents API of one account and region (AWS JSON 1.1), with
// newest-first NextToken pagination of at most MaxResults (≤ 50) events, the API's request
// rate limit (ThrottlingException past Rate requests per second) and injected throttling.
type CloudTrail struct {
	Server *httptest.Server
	// Region is the region the request signature must be scoped to.
	Region string
	// Rate is the allowed requests per second; 0 means CloudTrail's 2.
	Rate float64

	mu        sync.Mutex
	events    []LookupEvent
	requests  []time.Time
	throttle  int
	throttled int
	calls     int
}

// LookupEvent is one event the API serves.
type LookupEvent struct {
	ID   string
	Time time.Time
	// JSON is the CloudTrail record, served as the CloudTrailEvent string.
	JSON string
}

// NewCloudTrail starts a LookupEvents server for a region, closed when the test ends.
func NewCloudTrail(t testing.TB, region string) *CloudTrail {
	c := &CloudTrail{Region: region}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Server.Close)
	return c
}

// Add makes events visible to LookupEvents (as CloudTrail does, possibly late).
func (c *CloudTrail) Add(evs ...LookupEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, evs...)
}

// ThrottleNext answers the next n requests with ThrottlingException.
func (c *CloudTrail) ThrottleNext(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.throttle = n
}

// Stats returns the number of requests and of throttled ones.
func (c *CloudTrail) Stats() (calls, throttled int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls, c.throttled
}

type pageToken struct {
	Start, End float64
	Offset     int
}

func (c *CloudTrail) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	if !strings.HasSuffix(target, "CloudTrail_20131101.LookupEvents") {
		jsonError(w, http.StatusBadRequest, "UnknownOperationException", "unknown target "+target)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.1") {
		jsonError(w, http.StatusBadRequest, "SerializationException", "content type must be application/x-amz-json-1.1")
		return
	}
	if !strings.Contains(r.Header.Get("Authorization"), "/"+c.Region+"/cloudtrail/aws4_request") {
		jsonError(w, http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid.")
		return
	}
	var in struct {
		StartTime, EndTime *float64
		MaxResults         int
		NextToken          string
		LookupAttributes   []struct{ AttributeKey, AttributeValue string }
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		jsonError(w, http.StatusBadRequest, "SerializationException", "request is not JSON")
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	now := time.Now()
	c.requests = slices.DeleteFunc(c.requests, func(t time.Time) bool { return now.Sub(t) >= time.Second })
	limit := c.Rate
	if limit == 0 {
		limit = 2
	}
	if c.throttle > 0 || float64(len(c.requests)) >= math.Ceil(limit) {
		if c.throttle > 0 {
			c.throttle--
		}
		c.throttled++
		jsonError(w, http.StatusBadRequest, "ThrottlingException", "Rate exceeded")
		return
	}
	c.requests = append(c.requests, now)
	if in.MaxResults == 0 {
		in.MaxResults = 50
	}
	if in.MaxResults < 1 || in.MaxResults > 50 {
		jsonError(w, http.StatusBadRequest, "InvalidMaxResultsException", "MaxResults must be 1 to 50")
		return
	}
	start, end := 0.0, float64(now.Unix()+1)
	if in.StartTime != nil {
		start = *in.StartTime
	}
	if in.EndTime != nil {
		end = *in.EndTime
	}
	if start > end {
		jsonError(w, http.StatusBadRequest, "InvalidTimeRangeException", "StartTime is after EndTime")
		return
	}
	offset := 0
	if in.NextToken != "" {
		var tok pageToken
		raw, err := base64.StdEncoding.DecodeString(in.NextToken)
		if err != nil || json.Unmarshal(raw, &tok) != nil || tok.Start != start || tok.End != end {
			jsonError(w, http.StatusBadRequest, "InvalidNextTokenException", "The NextToken is invalid for these parameters.")
			return
		}
		offset = tok.Offset
	}
	// Matching events, newest first (ties by id, so pages are stable).
	var match []LookupEvent
	for _, e := range c.events {
		ts := float64(e.Time.UnixNano()) / 1e9
		if ts >= start && ts <= end && matchesAttrs(e, in.LookupAttributes) {
			match = append(match, e)
		}
	}
	slices.SortFunc(match, func(a, b LookupEvent) int {
		if d := b.Time.Compare(a.Time); d != 0 {
			return d
		}
		return strings.Compare(a.ID, b.ID)
	})
	if offset > len(match) {
		offset = len(match)
	}
	page := match[offset:min(offset+in.MaxResults, len(match))]
	type event struct {
		EventID         string `json:"EventId"`
		EventName       string
		EventTime       float64
		EventSource     string
		CloudTrailEvent string
	}
	out := struct {
		Events    []event
		NextToken string `json:",omitempty"`
	}{Events: []event{}}
	for _, e := range page {
		var rec struct{ EventName, EventSource string }
		json.Unmarshal([]byte(e.JSON), &rec)
		out.Events = append(out.Events, event{e.ID, rec.EventName, float64(e.Time.Unix()), rec.EventSource, e.JSON})
	}
	if next := offset + len(page); next < len(match) {
		raw, _ := json.Marshal(pageToken{start, end, next})
		out.NextToken = base64.StdEncoding.EncodeToString(raw)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

func matchesAttrs(e LookupEvent, attrs []struct{ AttributeKey, AttributeValue string }) bool {
	for _, a := range attrs {
		if a.AttributeKey == "ReadOnly" && !strings.Contains(e.JSON, fmt.Sprintf(`"readOnly":%s`, a.AttributeValue)) {
			return false
		}
	}
	return true
}
