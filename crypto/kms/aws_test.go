package kms_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dbproxy/dbproxy/crypto/kms"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// awsEnv points the SDK's default credential chain at static dummy
// credentials only: no shared config files, no instance metadata.
func awsEnv(t *testing.T, accessKey, secret string) {
	t.Helper()
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID":           accessKey,
		"AWS_SECRET_ACCESS_KEY":       secret,
		"AWS_SESSION_TOKEN":           "",
		"AWS_PROFILE":                 "",
		"AWS_REGION":                  "",
		"AWS_DEFAULT_REGION":          "",
		"AWS_CONFIG_FILE":             none,
		"AWS_SHARED_CREDENTIALS_FILE": none,
		"AWS_EC2_METADATA_DISABLED":   "true",
	} {
		t.Setenv(k, v)
	}
}

func startKMS(t *testing.T) *testenv.LocalKMS {
	t.Helper()
	k := testenv.StartLocalKMS(t)
	awsEnv(t, k.AccessKeyID, k.SecretAccessKey)
	return k
}

func newAWS(t *testing.T, k *testenv.LocalKMS, keyID string, maxAttempts int) *kms.AWS {
	t.Helper()
	a, err := kms.NewAWS(context.Background(), kms.AWSOptions{
		KeyID: keyID, Region: k.Region, Endpoint: k.Endpoint, MaxAttempts: maxAttempts,
	})
	if err != nil {
		t.Fatalf("NewAWS(%q): %v", keyID, err)
	}
	return a
}

// assertNoSecret fails if msg contains key in any common encoding.
func assertNoSecret(t *testing.T, msg string, key []byte) {
	t.Helper()
	if len(key) == 0 {
		return
	}
	if strings.Contains(msg, string(key)) || strings.Contains(strings.ToLower(msg), hex.EncodeToString(key[:8])) {
		t.Errorf("error reveals key bytes: %s", msg)
	}
}

func TestAWS(t *testing.T) {
	ctx := context.Background()
	k := startKMS(t)

	t.Run("id resolves to the key ARN", func(t *testing.T) {
		for _, id := range []string{k.KeyID, k.Alias, k.KeyARN} {
			if got := newAWS(t, k, id, 0).ID(); got != k.KeyARN {
				t.Errorf("NewAWS(%q).ID() = %q, want %q", id, got, k.KeyARN)
			}
		}
	})

	mk := newAWS(t, k, k.Alias, 0)
	ref := kms.KeyRef{Name: "public.users.email", Version: 7}
	plain, wrapped, err := mk.GenerateDataKey(ctx, ref, 64)
	if err != nil {
		t.Fatal(err)
	}
	if len(plain) != 64 || len(wrapped) == 0 {
		t.Fatalf("GenerateDataKey returned %d plaintext and %d wrapped bytes", len(plain), len(wrapped))
	}
	if bytes.Contains(wrapped, plain[:16]) {
		t.Fatal("wrapped bytes contain the data key")
	}

	t.Run("round trip", func(t *testing.T) {
		// A fresh client (another proxy instance) unwraps it too.
		for _, m := range []*kms.AWS{mk, newAWS(t, k, k.KeyID, 0)} {
			mustUnwrapTo(t, m, ref, wrapped, plain)
		}
		rewrapped, err := mk.Wrap(ctx, ref, plain)
		if err != nil {
			t.Fatal(err)
		}
		got, err := mk.Unwrap(ctx, ref, rewrapped)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Unwrap of Wrap output: %v", err)
		}
		p32, w32, err := mk.GenerateDataKey(ctx, kms.KeyRef{Name: "k", Version: 1}, 32)
		if err != nil || len(p32) != 32 {
			t.Fatalf("GenerateDataKey(32) = %d bytes, %v", len(p32), err)
		}
		if got, err := mk.Unwrap(ctx, kms.KeyRef{Name: "k", Version: 1}, w32); err != nil || !bytes.Equal(got, p32) {
			t.Fatalf("Unwrap 32-byte key: %v", err)
		}
	})

	t.Run("wrong context or blob", func(t *testing.T) {
		tampered := bytes.Clone(wrapped)
		tampered[len(tampered)-5] ^= 0x01
		cases := []struct {
			name    string
			ref     kms.KeyRef
			wrapped []byte
		}{
			{"other name", kms.KeyRef{Name: "public.users.ssn", Version: 7}, wrapped},
			{"other version", kms.KeyRef{Name: ref.Name, Version: 8}, wrapped},
			{"tampered", ref, tampered},
		}
		for _, tt := range cases {
			t.Run(tt.name, func(t *testing.T) {
				got, err := mk.Unwrap(ctx, tt.ref, tt.wrapped)
				if !errors.Is(err, kms.ErrUnwrap) {
					t.Fatalf("Unwrap = %d bytes, %v; want ErrUnwrap", len(got), err)
				}
				msg := err.Error()
				if !strings.Contains(msg, tt.ref.String()) || !strings.Contains(msg, k.KeyARN) {
					t.Errorf("error %q does not name the data key and the KMS key", msg)
				}
				assertNoSecret(t, msg, plain)
			})
		}
	})

	t.Run("unknown key", func(t *testing.T) {
		_, err := kms.NewAWS(ctx, kms.AWSOptions{KeyID: "alias/does-not-exist", Region: k.Region, Endpoint: k.Endpoint})
		if !errors.Is(err, kms.ErrDenied) || !strings.Contains(err.Error(), "alias/does-not-exist") {
			t.Fatalf("NewAWS with an unknown key = %v, want ErrDenied naming the key", err)
		}
	})

	t.Run("stopped", func(t *testing.T) {
		fast := newAWS(t, k, k.Alias, 1)
		k.Stop()
		_, err := fast.Unwrap(ctx, ref, wrapped)
		if !errors.Is(err, kms.ErrUnreachable) || errors.Is(err, kms.ErrDenied) || errors.Is(err, kms.ErrUnwrap) {
			t.Fatalf("Unwrap with KMS stopped = %v, want ErrUnreachable only", err)
		}
		msg := err.Error()
		for _, want := range []string{"unreachable", ref.String(), k.KeyARN} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		assertNoSecret(t, msg, plain)
		if _, _, err := fast.GenerateDataKey(ctx, ref, 32); !errors.Is(err, kms.ErrUnreachable) {
			t.Errorf("GenerateDataKey with KMS stopped = %v, want ErrUnreachable", err)
		}
		if _, err := fast.Wrap(ctx, ref, plain); !errors.Is(err, kms.ErrUnreachable) {
			t.Errorf("Wrap with KMS stopped = %v, want ErrUnreachable", err)
		}
		if _, err := kms.NewAWS(ctx, kms.AWSOptions{KeyID: k.Alias, Region: k.Region, Endpoint: k.Endpoint, MaxAttempts: 1}); !errors.Is(err, kms.ErrUnreachable) {
			t.Errorf("NewAWS with KMS stopped = %v, want ErrUnreachable", err)
		}

		k.Start()
		got, err := fast.Unwrap(ctx, ref, wrapped)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Unwrap after restart: %v", err)
		}
	})

	t.Run("closed port", func(t *testing.T) {
		// Nothing listens at all (connection refused rather than reset).
		srv := httptest.NewServer(http.NotFoundHandler())
		endpoint := srv.URL
		srv.Close()
		_, err := kms.NewAWS(ctx, kms.AWSOptions{KeyID: k.Alias, Region: k.Region, Endpoint: endpoint, MaxAttempts: 1})
		if !errors.Is(err, kms.ErrUnreachable) || !strings.Contains(err.Error(), k.Alias) {
			t.Errorf("NewAWS against a closed port = %v, want ErrUnreachable naming the key", err)
		}
	})
}

// TestAWSDenied scripts a KMS that denies everything: DescribeKey denial
// falls back to the configured key id, and denied operations are
// ErrDenied, not ErrUnreachable.
func TestAWSDenied(t *testing.T) {
	awsEnv(t, "AKIDEXAMPLE", "secret")
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("X-Amzn-ErrorType", "AccessDeniedException")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"__type":"AccessDeniedException","message":"User is not authorized to perform this operation"}`)
	}))
	defer srv.Close()

	ctx := context.Background()
	const keyID = "alias/restricted"
	mk, err := kms.NewAWS(ctx, kms.AWSOptions{KeyID: keyID, Region: "us-east-1", Endpoint: srv.URL, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatalf("NewAWS with DescribeKey denied: %v", err)
	}
	if mk.ID() != keyID {
		t.Errorf("ID() = %q, want the configured %q", mk.ID(), keyID)
	}
	if calls.Load() != 1 {
		t.Errorf("NewAWS made %d calls, want 1 (DescribeKey)", calls.Load())
	}
	ref := kms.KeyRef{Name: "orders.total", Version: 2}
	_, err = mk.Unwrap(ctx, ref, []byte("blob"))
	if !errors.Is(err, kms.ErrDenied) || errors.Is(err, kms.ErrUnreachable) || errors.Is(err, kms.ErrUnwrap) {
		t.Fatalf("Unwrap = %v, want ErrDenied only", err)
	}
	for _, want := range []string{ref.String(), keyID, "AccessDeniedException"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, _, err := mk.GenerateDataKey(ctx, ref, 32); !errors.Is(err, kms.ErrDenied) {
		t.Errorf("GenerateDataKey = %v, want ErrDenied", err)
	}
}

func TestNewAWSRequiresKeyID(t *testing.T) {
	if _, err := kms.NewAWS(context.Background(), kms.AWSOptions{Region: "us-east-1"}); err == nil {
		t.Error("NewAWS accepted an empty key id")
	}
}
