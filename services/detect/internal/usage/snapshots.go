package usage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nhiwatch/nhiwatch/pkg/events"
	"github.com/nhiwatch/nhiwatch/pkg/events/streams"
	"github.com/nhiwatch/nhiwatch/services/detect/internal/grants"
)

// SnapshotStore keeps imported snapshots in JetStream, so every detect replica (and a
// restarted one) starts from the same inventory.
type SnapshotStore struct{ os jetstream.ObjectStore }

// OpenSnapshotStore creates or opens the snapshot bucket, replicated like the streams.
func OpenSnapshotStore(ctx context.Context, js jetstream.JetStream, sc streams.Config) (*SnapshotStore, error) {
	os, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: events.BucketGrants, Description: "nhiwatch inventory snapshots (grants)", Replicas: sc.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("grants snapshot store: %w", err)
	}
	return &SnapshotStore{os: os}, nil
}

// objectName is the object of a scope: scopes hold ':' and '/', so the name is a hash.
func objectName(scope string) string {
	sum := sha256.Sum256([]byte(scope))
	return "snapshot-" + hex.EncodeToString(sum[:12])
}

// ErrOlderSnapshot is returned by Put for a snapshot older than the one stored for its
// scope: the stored one shows a later state.
var ErrOlderSnapshot = errors.New("older than the snapshot stored for its scope")

// Put stores a snapshot, replacing the one of the same scope unless that one is newer.
func (s *SnapshotStore) Put(ctx context.Context, snap *grants.Snapshot) error {
	if cur, err := s.get(ctx, objectName(snap.Scope)); err == nil && cur.Taken.After(snap.Taken) {
		return fmt.Errorf("snapshot %s taken %s: %w (taken %s)", snap.Scope, snap.Taken.Format(time.RFC3339), ErrOlderSnapshot, cur.Taken.Format(time.RFC3339))
	} else if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) && !errors.Is(err, grants.ErrFormat) {
		return err
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	_, err = s.os.Put(ctx, jetstream.ObjectMeta{Name: objectName(snap.Scope), Description: snap.Scope}, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("store snapshot %s: %w", snap.Scope, err)
	}
	return nil
}

// LoadAll reads every stored snapshot.
func (s *SnapshotStore) LoadAll(ctx context.Context) ([]*grants.Snapshot, error) {
	infos, err := s.os.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []*grants.Snapshot
	for _, info := range infos {
		if info.Deleted {
			continue
		}
		snap, err := s.get(ctx, info.Name)
		if err != nil {
			return nil, err
		}
		out = append(out, snap)
	}
	return out, nil
}

func (s *SnapshotStore) get(ctx context.Context, name string) (*grants.Snapshot, error) {
	b, err := s.os.GetBytes(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: %w", name, err)
	}
	var snap grants.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("%w: stored snapshot %s: %v", grants.ErrFormat, name, err)
	}
	return &snap, nil
}
