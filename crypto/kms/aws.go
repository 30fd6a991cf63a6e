package kms

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// EncryptionContext keys bound to every wrapped data key (visible, not
// secret: AWS logs them in CloudTrail).
const (
	ContextKeyName    = "dbproxy:key"
	ContextKeyVersion = "dbproxy:version"
)

// AWSOptions configures an [AWS] master key.
type AWSOptions struct {
	// KeyID is the KMS key: key id, key ARN, alias name ("alias/x") or
	// alias ARN. Required.
	KeyID string
	// Region is the AWS region; empty means the SDK's default chain
	// (AWS_REGION, shared config).
	Region string
	// Endpoint overrides the KMS endpoint (VPC endpoint, local test KMS),
	// for example "http://127.0.0.1:4599". Optional.
	Endpoint string
	// HTTPClient replaces the SDK's HTTP client. Optional.
	HTTPClient *http.Client
	// MaxAttempts bounds the attempts per KMS call, retries included.
	// Zero means the SDK default (3).
	MaxAttempts int
}

// AWS is a master key held in AWS KMS. Wrapping and unwrapping are KMS
// calls (GenerateDataKey, Encrypt, Decrypt) with the data key's name and
// version as EncryptionContext:
//
//	{"dbproxy:key": name, "dbproxy:version": "<decimal version>"}
//
// It is safe for concurrent use.
type AWS struct {
	client *kms.Client
	// id is the key ARN (resolved once by DescribeKey), or the configured
	// key id if DescribeKey was denied. It is also the KeyId sent on every
	// call, so an alias re-pointed later does not change which key this
	// value wraps with until restart.
	id string
}

var _ MasterKey = (*AWS)(nil)

// NewAWS builds a KMS client with the standard credential chain
// (environment, shared config, SSO, container and instance roles) and
// resolves opts.KeyID to the key ARN with DescribeKey. If DescribeKey is
// denied (the policy grants only cryptographic operations) the configured
// key id is used as the id instead. An unreachable KMS is an error.
func NewAWS(ctx context.Context, opts AWSOptions) (*AWS, error) {
	if opts.KeyID == "" {
		return nil, errors.New("aws kms master key: key id is required")
	}
	var loadOpts []func(*config.LoadOptions) error
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("aws kms master key %q: load AWS configuration: %w", opts.KeyID, err)
	}
	client := kms.NewFromConfig(cfg, func(o *kms.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		if opts.HTTPClient != nil {
			o.HTTPClient = opts.HTTPClient
		}
		if opts.MaxAttempts > 0 {
			o.RetryMaxAttempts = opts.MaxAttempts
		}
	})

	a := &AWS{client: client, id: opts.KeyID}
	out, err := client.DescribeKey(ctx, &kms.DescribeKeyInput{KeyId: aws.String(opts.KeyID)})
	switch {
	case err == nil:
		if md := out.KeyMetadata; md != nil {
			if md.KeySpec != "" && md.KeySpec != types.KeySpecSymmetricDefault {
				return nil, fmt.Errorf("aws kms master key %q: key spec is %s, want %s", opts.KeyID, md.KeySpec, types.KeySpecSymmetricDefault)
			}
			if md.KeyUsage != "" && md.KeyUsage != types.KeyUsageTypeEncryptDecrypt {
				return nil, fmt.Errorf("aws kms master key %q: key usage is %s, want %s", opts.KeyID, md.KeyUsage, types.KeyUsageTypeEncryptDecrypt)
			}
			if md.Arn != nil && *md.Arn != "" {
				a.id = *md.Arn
			}
		}
	case isAccessDenied(err):
		// Keep the configured id: the key may still be usable for
		// GenerateDataKey/Decrypt/Encrypt.
	default:
		return nil, fmt.Errorf("aws kms master key %q: describe key: %w", opts.KeyID, classify(err, false))
	}
	return a, nil
}

// ID returns the key ARN (or the configured key id if DescribeKey was
// denied at construction).
func (a *AWS) ID() string { return a.id }

// String returns the id.
func (a *AWS) String() string { return a.id }

// GenerateDataKey asks KMS for a new data key of size bytes, returned both
// in plaintext and wrapped under the KMS key for ref.
func (a *AWS) GenerateDataKey(ctx context.Context, ref KeyRef, size int) (plaintext, wrapped []byte, err error) {
	if size <= 0 || size > maxDataKeySize {
		return nil, nil, fmt.Errorf("generate data key %s with KMS key %q: invalid size %d", ref, a.id, size)
	}
	out, err := a.client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId:             aws.String(a.id),
		NumberOfBytes:     aws.Int32(int32(size)),
		EncryptionContext: encryptionContext(ref),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("generate data key %s with KMS key %q: %w", ref, a.id, classify(err, false))
	}
	if len(out.Plaintext) != size || len(out.CiphertextBlob) == 0 {
		clear(out.Plaintext)
		return nil, nil, fmt.Errorf("generate data key %s with KMS key %q: KMS returned a %d-byte key, want %d", ref, a.id, len(out.Plaintext), size)
	}
	return out.Plaintext, out.CiphertextBlob, nil
}

// Unwrap decrypts wrapped with KMS, requiring the KMS key this value was
// built with and ref's EncryptionContext. A blob that KMS rejects as
// ciphertext (wrong key, wrong context, corrupted) is [ErrUnwrap].
func (a *AWS) Unwrap(ctx context.Context, ref KeyRef, wrapped []byte) ([]byte, error) {
	if len(wrapped) == 0 {
		return nil, fmt.Errorf("unwrap data key %s with KMS key %q: %w", ref, a.id, ErrUnwrap)
	}
	out, err := a.client.Decrypt(ctx, &kms.DecryptInput{
		CiphertextBlob:    wrapped,
		EncryptionContext: encryptionContext(ref),
		KeyId:             aws.String(a.id),
	})
	if err != nil {
		return nil, fmt.Errorf("unwrap data key %s with KMS key %q: %w", ref, a.id, classify(err, true))
	}
	if len(out.Plaintext) == 0 || len(out.Plaintext) > maxDataKeySize {
		clear(out.Plaintext)
		return nil, fmt.Errorf("unwrap data key %s with KMS key %q: KMS returned a %d-byte key", ref, a.id, len(out.Plaintext))
	}
	return out.Plaintext, nil
}

// Wrap encrypts plaintext with KMS for ref (used to rewrap a data key under
// this master key).
func (a *AWS) Wrap(ctx context.Context, ref KeyRef, plaintext []byte) ([]byte, error) {
	if len(plaintext) == 0 || len(plaintext) > maxDataKeySize {
		return nil, fmt.Errorf("wrap data key %s with KMS key %q: invalid size %d", ref, a.id, len(plaintext))
	}
	out, err := a.client.Encrypt(ctx, &kms.EncryptInput{
		KeyId:             aws.String(a.id),
		Plaintext:         plaintext,
		EncryptionContext: encryptionContext(ref),
	})
	if err != nil {
		return nil, fmt.Errorf("wrap data key %s with KMS key %q: %w", ref, a.id, classify(err, false))
	}
	if len(out.CiphertextBlob) == 0 {
		return nil, fmt.Errorf("wrap data key %s with KMS key %q: KMS returned no ciphertext", ref, a.id)
	}
	return out.CiphertextBlob, nil
}

func encryptionContext(ref KeyRef) map[string]string {
	return map[string]string{
		ContextKeyName:    ref.Name,
		ContextKeyVersion: strconv.FormatUint(uint64(ref.Version), 10),
	}
}

// classify tags a KMS client error with ErrUnreachable, ErrDenied or
// ErrUnwrap, keeping the SDK error (operation, code, request id) in the
// chain. The SDK error text never contains request payloads.
func classify(err error, unwrapping bool) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "InvalidCiphertextException", "IncorrectKeyException":
			if unwrapping {
				return fmt.Errorf("%w: %w", ErrUnwrap, err)
			}
		case "DependencyTimeoutException", "KMSInternalException", "KeyUnavailableException",
			"ThrottlingException", "ServiceUnavailableException":
			return fmt.Errorf("%w (KMS unavailable): %w", ErrUnreachable, err)
		}
		return fmt.Errorf("%w: %w", ErrDenied, err)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var sendErr *smithyhttp.RequestSendError
	var netErr net.Error
	var respErr *smithyhttp.ResponseError
	switch {
	case errors.As(err, &sendErr), errors.As(err, &netErr), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	case errors.As(err, &respErr) && respErr.HTTPStatusCode() >= 500:
		return fmt.Errorf("%w (KMS unavailable): %w", ErrUnreachable, err)
	}
	return err
}

func isAccessDenied(err error) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == "AccessDeniedException"
}
