// Package awstest runs local HTTP servers that speak AWS service protocols for tests: an SQS
// queue (AWS JSON 1.0: ReceiveMessage with long polling and visibility timeouts,
// DeleteMessage, ChangeMessageVisibility, SendMessage, GetQueueAttributes) and the CloudTrail
// LookupEvents API (AWS JSON 1.1 with NextToken pagination and ThrottlingException). They
// follow the documented request and error shapes closely enough for the AWS SDK for Go v2.
package awstest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SQS is one standard SQS queue behind a local endpoint.
type SQS struct {
	Server   *httptest.Server
	QueueURL string

	mu       sync.Mutex
	msgs     []*sqsMsg
	nextID   int
	calls    map[string]int
	received map[string]int // message id → receive count
}

type sqsMsg struct {
	id, body, receipt string
	visibleAt         time.Time
	receives          int
	sent              time.Time
}

// NewSQS starts a queue server that is closed when the test ends.
func NewSQS(t testing.TB) *SQS {
	q := &SQS{calls: map[string]int{}, received: map[string]int{}}
	q.Server = httptest.NewServer(http.HandlerFunc(q.serve))
	q.QueueURL = q.Server.URL + "/123456789012/trail-queue"
	t.Cleanup(q.Server.Close)
	return q
}

// Send enqueues a message and returns its id.
func (q *SQS) Send(body string) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.send(body)
}

func (q *SQS) send(body string) string {
	q.nextID++
	id := fmt.Sprintf("msg-%04d", q.nextID)
	q.msgs = append(q.msgs, &sqsMsg{id: id, body: body, sent: time.Now()})
	return id
}

// Len is the number of messages not yet deleted (visible or in flight).
func (q *SQS) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

// Calls returns how many times an operation (e.g. "ChangeMessageVisibility") was called.
func (q *SQS) Calls(op string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.calls[op]
}

// Receives returns how many times a message was received.
func (q *SQS) Receives(id string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.received[id]
}

func (q *SQS) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "AmazonSQS.")
	if r.Method != http.MethodPost || !ok {
		jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#InvalidAction", "unknown target "+target)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-amz-json-1.0") {
		jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#InvalidParameterValue", "content type must be application/x-amz-json-1.0")
		return
	}
	var in struct {
		QueueURL            string `json:"QueueUrl"`
		MaxNumberOfMessages int
		WaitTimeSeconds     int
		VisibilityTimeout   *int
		ReceiptHandle       string
		MessageBody         string
		AttributeNames      []string
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#InvalidParameterValue", "request is not JSON")
		return
	}
	q.mu.Lock()
	q.calls[op]++
	q.mu.Unlock()
	if in.QueueURL != q.QueueURL {
		w.Header().Set("x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender")
		jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#QueueDoesNotExist", "The specified queue does not exist.")
		return
	}
	switch op {
	case "ReceiveMessage":
		q.receive(w, r, in.MaxNumberOfMessages, in.WaitTimeSeconds, in.VisibilityTimeout)
	case "DeleteMessage":
		q.mu.Lock()
		defer q.mu.Unlock()
		for i, m := range q.msgs {
			if m.receipt != "" && m.receipt == in.ReceiptHandle {
				q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
				writeJSON(w, struct{}{})
				return
			}
		}
		jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#ReceiptHandleIsInvalid", "The input receipt handle is invalid.")
	case "ChangeMessageVisibility":
		q.mu.Lock()
		defer q.mu.Unlock()
		vt := 0
		if in.VisibilityTimeout != nil {
			vt = *in.VisibilityTimeout
		}
		for _, m := range q.msgs {
			if m.receipt != "" && m.receipt == in.ReceiptHandle {
				if time.Now().After(m.visibleAt) {
					jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#MessageNotInflight", "The message is not in flight.")
					return
				}
				m.visibleAt = time.Now().Add(time.Duration(vt) * time.Second)
				writeJSON(w, struct{}{})
				return
			}
		}
		jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#ReceiptHandleIsInvalid", "The input receipt handle is invalid.")
	case "SendMessage":
		q.mu.Lock()
		id := q.send(in.MessageBody)
		q.mu.Unlock()
		writeJSON(w, map[string]string{"MessageId": id, "MD5OfMessageBody": md5hex(in.MessageBody)})
	case "GetQueueAttributes":
		q.mu.Lock()
		visible, inflight := 0, 0
		now := time.Now()
		for _, m := range q.msgs {
			if now.Before(m.visibleAt) {
				inflight++
			} else {
				visible++
			}
		}
		q.mu.Unlock()
		writeJSON(w, map[string]map[string]string{"Attributes": {
			"ApproximateNumberOfMessages":           strconv.Itoa(visible),
			"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(inflight),
		}})
	default:
		jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#UnsupportedOperation", op+" is not supported here")
	}
}

func (q *SQS) receive(w http.ResponseWriter, r *http.Request, maxN, waitSeconds int, visibility *int) {
	if maxN == 0 {
		maxN = 1
	}
	if maxN < 1 || maxN > 10 || waitSeconds < 0 || waitSeconds > 20 {
		jsonError(w, http.StatusBadRequest, "com.amazonaws.sqs#InvalidParameterValue", "MaxNumberOfMessages must be 1-10 and WaitTimeSeconds 0-20")
		return
	}
	vt := 30
	if visibility != nil {
		vt = *visibility
	}
	deadline := time.Now().Add(time.Duration(waitSeconds) * time.Second)
	type out struct {
		MessageID     string `json:"MessageId"`
		ReceiptHandle string
		MD5OfBody     string
		Body          string
		Attributes    map[string]string
	}
	for {
		var got []out
		now := time.Now()
		q.mu.Lock()
		for _, m := range q.msgs {
			if len(got) == maxN {
				break
			}
			if now.Before(m.visibleAt) {
				continue
			}
			m.receives++
			q.received[m.id]++
			m.receipt = fmt.Sprintf("%s-r%d", m.id, m.receives)
			m.visibleAt = now.Add(time.Duration(vt) * time.Second)
			got = append(got, out{
				MessageID: m.id, ReceiptHandle: m.receipt, MD5OfBody: md5hex(m.body), Body: m.body,
				Attributes: map[string]string{
					"ApproximateReceiveCount": strconv.Itoa(m.receives),
					"SentTimestamp":           strconv.FormatInt(m.sent.UnixMilli(), 10),
				},
			})
		}
		q.mu.Unlock()
		if len(got) > 0 || !time.Now().Before(deadline) {
			writeJSON(w, map[string][]out{"Messages": got})
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	json.NewEncoder(w).Encode(v)
}

// jsonError writes an AWS JSON protocol error: the shape name in __type, a message.
func jsonError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-RequestId", "test-request")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}
