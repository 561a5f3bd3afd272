package notify

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsShowTheGoldenFiles keeps docs/alerts.md true to the code: every example marked
// "<!-- golden: PATH -->" must equal the golden file the tests check the renderers against.
func TestDocsShowTheGoldenFiles(t *testing.T) {
	doc, err := os.ReadFile("../../docs/alerts.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- golden: (\\S+) -->\n```\\w*\n(.*?)\n```")
	found := re.FindAllSubmatch(doc, -1)
	if len(found) < 5 {
		t.Fatalf("docs/alerts.md has %d golden examples, want 5", len(found))
	}
	for _, m := range found {
		want, err := os.ReadFile(filepath.Join("../..", string(m[1])))
		if err != nil {
			t.Errorf("%s: %v", m[1], err)
			continue
		}
		if strings.TrimRight(string(want), "\n") != string(m[2]) {
			t.Errorf("docs/alerts.md shows an outdated %s: regenerate the example", m[1])
		}
	}
}
