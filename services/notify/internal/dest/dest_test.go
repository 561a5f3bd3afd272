package dest

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		h    string
		want time.Duration
	}{
		{"", 5 * time.Second},
		{"30", 30 * time.Second},
		{"0", 0},
		{"-3", 5 * time.Second},
		{"soon", 5 * time.Second},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"86400", 15 * time.Minute},
	}
	for _, tt := range tests {
		if got := ParseRetryAfter(tt.h, now, 5*time.Second); got != tt.want {
			t.Errorf("ParseRetryAfter(%q) = %s, want %s", tt.h, got, tt.want)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		code      int
		ok        bool
		permanent bool
		wait      time.Duration
	}{
		{200, true, false, 0},
		{202, true, false, 0},
		{400, false, true, 0},
		{403, false, true, 0},
		{404, false, true, 0},
		{408, false, false, 0},
		{429, false, false, 7 * time.Second},
		{500, false, false, 0},
		{503, false, false, 0},
	}
	for _, tt := range tests {
		resp := &http.Response{StatusCode: tt.code, Header: http.Header{"Retry-After": {"7"}}}
		err := HTTPStatus("test", resp, time.Now())
		if (err == nil) != tt.ok || IsPermanent(err) != tt.permanent || RetryAfter(err) != tt.wait {
			t.Errorf("HTTP %d: err=%v permanent=%v wait=%s", tt.code, err, IsPermanent(err), RetryAfter(err))
		}
	}
	if IsPermanent(errors.New("x")) || RetryAfter(errors.New("x")) != 0 {
		t.Error("plain error classified")
	}
}
