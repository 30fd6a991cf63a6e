package testenv

import "testing"

// Setenv points the AWS SDK of this process at k's dummy credentials for
// the test, and away from any shared configuration or profile.
func (k *LocalKMS) Setenv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", k.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", k.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
}
