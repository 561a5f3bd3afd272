package usage

import (
	"time"

	"github.com/nhiwatch/nhiwatch/services/detect/internal/catalog"
)

// CatalogOwners answers ownership from the catalog in force (reloads included).
func CatalogOwners(h *catalog.Holder) Owners { return catalogOwners{h} }

type catalogOwners struct{ h *catalog.Holder }

func (c catalogOwners) Ownership(identity string) Ownership {
	cat := c.h.Get()
	r := cat.Rule(cat.Match(identity))
	if r == nil {
		return Ownership{}
	}
	return Ownership{
		Owner: r.Owner, Team: r.Team, Kind: r.Kind,
		Suppressed: func(detector, cause string, t time.Time) bool { return r.Suppressed(detector, cause, t) != nil },
	}
}
