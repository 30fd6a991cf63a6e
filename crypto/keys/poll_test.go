package keys_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/crypto/keys"
	"github.com/dbproxy/dbproxy/crypto/keystore"
)

// failingList fails List while down is set.
type failingList struct {
	keystore.Store
	down atomic.Bool
}

func (s *failingList) List(ctx context.Context) ([]keystore.Record, error) {
	if s.down.Load() {
		return nil, errors.New("keystore db:5432 table \"dbproxy_keys\": list: connection refused")
	}
	return s.Store.List(ctx)
}

// TestPollActivatesOnlyWhatEveryReplicaReads: two replicas polling one
// keystore and a third process (the CLI) that rotates a deterministic key.
// At every second of the fake clock, a replica whose primary version is
// the new one implies that both replicas' lookups (Live) match it; the new
// version becomes primary at both once CreatedAt + activation has passed,
// and decrypts at both as soon as they have polled.
func TestPollActivatesOnlyWhatEveryReplicaReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = 10 * time.Second
		path := filepath.Join(t.TempDir(), "keys.json")
		master := newFakeMaster(t, "m1")
		opts := keys.Options{Master: master, TTL: time.Hour, Poll: poll, Activation: keys.ActivationDelay(poll)}
		cli := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master, Activation: opts.Activation})
		mustInit(t, cli, []keys.Spec{{Name: "d", Algorithm: crypto.AlgorithmAESSIV}})
		var replicas []*keys.Manager
		for range 2 {
			o := opts
			o.Store = openStoreAt(t, path)
			m := newManager(t, o)
			if v := mustPrimary(t, m, "d").Version(); v != 1 {
				t.Fatalf("primary v%d, want v1", v)
			}
			replicas = append(replicas, m)
		}
		time.Sleep(3 * time.Second) // rotate between two polls
		rec, err := cli.Rotate(ctx, "d")
		if err != nil {
			t.Fatal(err)
		}
		infos, err := cli.List(ctx)
		if err != nil || len(infos) != 2 || !infos[0].Primary || !infos[1].Pending || infos[1].Primary ||
			!infos[1].PrimaryAt.Equal(rec.CreatedAt.Add(2*poll)) {
			t.Fatalf("List after rotate: %+v, %v; want v1 primary, v2 pending until CreatedAt+%s", infos, err, 2*poll)
		}
		for sec := 0; sec <= 25; sec++ {
			synctest.Wait()
			primaryV2 := false
			for i, m := range replicas {
				v := mustPrimary(t, m, "d").Version()
				primaryV2 = primaryV2 || v == 2
				if sec >= 20 && v != 2 {
					t.Fatalf("replica %d, %ds after the rotation: primary v%d, want v2", i, sec, v)
				}
			}
			for i, m := range replicas {
				live, err := m.Live(ctx, "d")
				if err != nil {
					t.Fatal(err)
				}
				if primaryV2 && !slices.Contains(versions(live), 2) {
					t.Fatalf("%ds after the rotation a replica writes with v2, but replica %d matches only %v", sec, i, versions(live))
				}
				if sec >= int(poll/time.Second) && !slices.Equal(versions(live), []uint32{2, 1}) {
					t.Fatalf("replica %d, %ds after the rotation: live %v, want [2 1]", i, sec, versions(live))
				}
			}
			time.Sleep(time.Second)
		}
		infos, err = cli.List(ctx)
		if err != nil || !infos[1].Primary || infos[1].Pending || infos[0].Primary {
			t.Fatalf("List after the activation: %+v, %v", infos, err)
		}
	})
}

// TestPollFailureKeepsLastList: a failing poll keeps the versions read
// before (lookups and writes go on), is logged once rather than at every
// tick, names no key material, and its recovery is logged; the next good
// poll brings a rotation made meanwhile.
func TestPollFailureKeepsLastList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = time.Second
		path := filepath.Join(t.TempDir(), "keys.json")
		master := newFakeMaster(t, "m1")
		store := &failingList{Store: openStoreAt(t, path)}
		logger, logs := testLogger(-8)
		m := newManager(t, keys.Options{Store: store, Master: master, TTL: time.Hour, Poll: poll,
			Activation: keys.ActivationDelay(poll), Logger: logger})
		cli := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master})
		mustInit(t, cli, []keys.Spec{{Name: "d", Algorithm: crypto.AlgorithmAESSIV}})
		mustPrimary(t, m, "d")
		store.down.Store(true)
		if _, err := cli.Rotate(ctx, "d"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * poll)
		synctest.Wait()
		live, err := m.Live(ctx, "d")
		if err != nil || !slices.Equal(versions(live), []uint32{1}) {
			t.Fatalf("while polls fail: live %v, %v; want the last list [1]", versions(live), err)
		}
		if n := strings.Count(logs.String(), "keystore poll failed"); n != 1 {
			t.Fatalf("%d poll failure lines for 10 failures within a minute, want 1:\n%s", n, logs.String())
		}
		store.down.Store(false)
		time.Sleep(poll)
		synctest.Wait()
		if live, err = m.Live(ctx, "d"); err != nil || !slices.Equal(versions(live), []uint32{2, 1}) {
			t.Fatalf("after the keystore is back: live %v, %v; want [2 1]", versions(live), err)
		}
		for _, want := range []string{"keystore poll works again", "failures=10", "read a new data key version", "connection refused"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("logs lack %q:\n%s", want, logs.String())
			}
		}
		if master.leaked(logs.String()) {
			t.Fatalf("logs hold key material:\n%s", logs.String())
		}
	})
}

// TestPollKeepsMissPathAndCache: with a long poll, a ciphertext under a
// version this replica has not polled yet still decrypts at once (the miss
// path reads the keystore), and polls that find nothing new keep the
// unwrapped key and never read a key's versions with Get.
func TestPollKeepsMissPathAndCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys.json")
		master := newFakeMaster(t, "m1")
		store := &getCounter{Store: openStoreAt(t, path)}
		m := newManager(t, keys.Options{Store: store, Master: master, TTL: time.Hour, Poll: time.Minute,
			Activation: keys.ActivationDelay(time.Minute)})
		other := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master})
		mustInit(t, other, []keys.Spec{{Name: "r", Algorithm: crypto.AlgorithmXAESGCM}})
		k := mustPrimary(t, m, "r")
		gets := store.gets.Load()
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		if k2 := mustPrimary(t, m, "r"); k2 != k || store.gets.Load() != gets {
			t.Fatalf("after 30 polls: same key %v, Gets %d -> %d; want the cached key and no Get", k2 == k, gets, store.gets.Load())
		}
		if _, err := other.Rotate(ctx, "r"); err != nil {
			t.Fatal(err)
		}
		mustDecrypt(t, m, "r", encrypt(t, mustPrimary(t, other, "r"), "fresh"), "fresh")
	})
}

// TestNewRefusesShortActivation: an activation delay shorter than two
// polls could let a replica write under a version another has not read.
func TestNewRefusesShortActivation(t *testing.T) {
	_, err := keys.New(keys.Options{Store: openStore(t), Master: newFakeMaster(t, "m1"), Poll: time.Second, Activation: time.Second})
	if err == nil || !strings.Contains(err.Error(), "twice the poll interval") {
		t.Fatalf("New with activation = poll: %v", err)
	}
}

// TestPollWarnsOfLateVersion: a version read by a poll well before its
// activation is logged at info; one read less than half a poll before it
// (the rotating host's clock behind, here by 15s of a 20s delay) is a
// warning about clocks and polls.
func TestPollWarnsOfLateVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const poll = 10 * time.Second
		path := filepath.Join(t.TempDir(), "keys.json")
		master := newFakeMaster(t, "m1")
		logger, logs := testLogger(0)
		m := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master, TTL: time.Hour, Poll: poll,
			Activation: keys.ActivationDelay(poll), Logger: logger})
		var skew time.Duration
		cli := newManager(t, keys.Options{Store: openStoreAt(t, path), Master: master,
			Now: func() time.Time { return time.Now().Add(-skew) }})
		mustInit(t, cli, []keys.Spec{{Name: "d", Algorithm: crypto.AlgorithmAESSIV}})
		mustPrimary(t, m, "d")
		for _, skew = range []time.Duration{0, 15 * time.Second} {
			if _, err := cli.Rotate(ctx, "d"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(poll)
			synctest.Wait()
		}
		if !strings.Contains(logs.String(), `level=INFO msg="read a new data key version" key=d version=2`) ||
			!strings.Contains(logs.String(), `level=WARN msg="read a new data key version less than half a keystore poll before it becomes primary`) ||
			strings.Count(logs.String(), "level=WARN") != 1 {
			t.Fatalf("logs:\n%s", logs.String())
		}
	})
}
