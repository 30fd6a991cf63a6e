package integration

// The deployment examples of docs/deploy.md agree with the configuration
// they carry: the Kubernetes manifests (examples/kubernetes/) and the AWS
// ECS files (examples/aws-ecs/). No cluster and no AWS account are needed:
// the manifests are read as YAML (multi-document) or JSON, and the
// configurations they carry go through config.Load.

import (
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dbproxy/dbproxy/config"
)

// adminShutdown is how long serve gives the admin listener to shut down
// after the database listeners drained (cmd/dbproxy's adminShutdownTimeout).
const adminShutdown = 5 * time.Second

// listenPort is the port of a host:port the config loader accepted, and
// whether its host is every interface (so that probes and the Service
// reach it from outside the container).
func listenPort(t *testing.T, addr string) (int, bool) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return port, host == "" || host == "0.0.0.0" || host == "::"
}

// servedPorts is the set of ports a container must expose for cfg: one per
// listener and the admin port. Every address must be on every interface.
func servedPorts(t *testing.T, cfg *config.Config) (listeners []int, admin int) {
	t.Helper()
	for _, l := range cfg.Listeners {
		p, any := listenPort(t, l.Listen)
		if !any {
			t.Errorf("listener %s listens on %s: in a container it must listen on every interface (0.0.0.0)", l.Name, l.Listen)
		}
		listeners = append(listeners, p)
	}
	if cfg.Admin == nil {
		t.Fatal("the configuration has no admin: section (probes and health checks need /readyz and /healthz)")
	}
	admin, any := listenPort(t, cfg.Admin.Listen)
	if !any {
		t.Errorf("admin.listen is %s: probes come from outside the container, listen on 0.0.0.0", cfg.Admin.Listen)
	}
	return listeners, admin
}

// loadConfigText writes a configuration to dir/name, next to placeholder
// files for those it refers to by relative path (others), and loads it.
func loadConfigText(t *testing.T, what, text, name string, others ...string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for _, o := range others {
		if err := os.WriteFile(filepath.Join(dir, o), []byte("placeholder\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatalf("%s does not load: %v", what, err)
	}
	return cfg
}

// configFlag is the value of --config in args.
func configFlag(t *testing.T, what string, args []string) string {
	t.Helper()
	i := slices.Index(args, "--config")
	if i < 0 || i+1 == len(args) {
		t.Fatalf("%s: no --config in %q", what, args)
	}
	return args[i+1]
}

// passwordEnvs names the environment variables cfg reads passwords from;
// catalogs too when serving (keys commands need only the keystore's).
func passwordEnvs(cfg *config.Config, serving bool) []string {
	var envs []string
	if cfg.Keys.Store.PasswordEnv != "" {
		envs = append(envs, cfg.Keys.Store.PasswordEnv)
	}
	for _, l := range cfg.Listeners {
		if serving && l.Catalog != nil && l.Catalog.PasswordEnv != "" {
			envs = append(envs, l.Catalog.PasswordEnv)
		}
	}
	return envs
}

func sortedInts(xs ...int) []int {
	ys := slices.Clone(xs)
	slices.Sort(ys)
	return ys
}

// isUnder reports whether p is a file directly in dir.
func isUnder(p, dir string) bool { return path.Dir(p) == path.Clean(dir) }

func TestDeployKubernetesExamples(t *testing.T) {
	objs := k8sManifests(t, "examples/kubernetes")
	secretKeys := map[k8sSecretKey]bool{}

	var dep k8sWorkload
	k8sFind(t, objs, "Deployment", "dbproxy", &dep)
	cfg := checkK8sPod(t, objs, "Deployment dbproxy", &dep.Spec.Template.Spec, true, secretKeys)
	checkK8sServing(t, objs, &dep, cfg)

	var job k8sWorkload
	k8sFind(t, objs, "Job", "dbproxy-keys-init", &job)
	jcfg := checkK8sPod(t, objs, "Job dbproxy-keys-init", &job.Spec.Template.Spec, false, secretKeys)
	if c := &job.Spec.Template.Spec.Containers[0]; !slices.Equal(c.Args[:2], []string{"keys", "init"}) {
		t.Errorf("Job dbproxy-keys-init runs %q, want keys init", c.Args)
	}
	if jcfg.Keys.Store != cfg.Keys.Store {
		t.Error("the keys init Job and the Deployment use different keystores")
	}

	// docs/deploy.md creates the Secret with every key the manifests use.
	doc := repoFile(t, "docs/deploy.md")
	for sk := range secretKeys {
		if !strings.Contains(doc, "kubectl create secret generic "+sk.Name) {
			t.Errorf("docs/deploy.md does not create the Secret %s", sk.Name)
		}
		if !strings.Contains(doc, "--from-file="+sk.Key+"=") && !strings.Contains(doc, "--from-literal="+sk.Key+"=") {
			t.Errorf("docs/deploy.md does not put %s into the Secret %s", sk.Key, sk.Name)
		}
	}
	if len(secretKeys) == 0 {
		t.Error("the manifests take nothing from a Secret")
	}
}

func parseYAML(t *testing.T, rel string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(repoFile(t, rel)), v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

func TestDeployECSExamples(t *testing.T) {
	const dir = "examples/aws-ecs"
	var td ecsTaskDefinition
	parseYAML(t, dir+"/task-definition.json", &td)
	if len(td.ContainerDefinitions) != 1 {
		t.Fatalf("task definition: %d containers, want the dbproxy one", len(td.ContainerDefinitions))
	}
	c := td.ContainerDefinitions[0]

	// The image (Dockerfile) puts the configuration where --config says,
	// and the files it names by relative path next to it.
	cfgPath := configFlag(t, "task definition", c.Command)
	baked := dockerfileFiles(repoFile(t, dir+"/Dockerfile"))
	src, ok := baked[cfgPath]
	if !ok {
		t.Fatalf("%s/Dockerfile does not put a configuration at %s (--config)", dir, cfgPath)
	}
	var others []string
	for dst := range baked {
		if dst != cfgPath && isUnder(dst, path.Dir(cfgPath)) {
			others = append(others, path.Base(dst))
		}
	}
	cfg := loadConfigText(t, dir+"/"+src, repoFile(t, dir+"/"+src), path.Base(cfgPath), others...)

	listeners, admin := servedPorts(t, cfg)
	var mapped []int
	for _, p := range c.PortMappings {
		if p.Protocol != "tcp" {
			t.Errorf("port mapping %d: protocol %s, want tcp", p.ContainerPort, p.Protocol)
		}
		mapped = append(mapped, p.ContainerPort)
	}
	if want := sortedInts(append(slices.Clone(listeners), admin)...); !slices.Equal(sortedInts(mapped...), want) {
		t.Errorf("task definition maps ports %v, the configuration listens on %v", mapped, want)
	}
	if stop := time.Duration(c.StopTimeout) * time.Second; stop <= cfg.ShutdownTimeout+adminShutdown || stop > 120*time.Second {
		t.Errorf("stopTimeout %v must exceed shutdown_timeout %v + admin shutdown %v (and Fargate allows at most 120s)", stop, cfg.ShutdownTimeout, adminShutdown)
	}
	for _, env := range passwordEnvs(cfg, true) {
		if !slices.Contains(c.Secrets, ecsSecret{Name: env}) {
			t.Errorf("the configuration reads a password from $%s, which the task definition's secrets do not set", env)
		}
	}

	mk := cfg.Keys.MasterKey
	if mk.Provider != config.ProviderAWSKMS || cfg.Keys.Store.Type != config.StoreDatabase {
		t.Fatalf("master key %s, keystore %s: want aws-kms and a shared database keystore", mk.Provider, cfg.Keys.Store.Type)
	}
	checkIAM(t, dir+"/iam-task-role.json", mk.KeyID, "kms:Decrypt", "kms:DescribeKey")
	checkIAM(t, dir+"/iam-keys-admin.json", mk.KeyID, "kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt", "kms:DescribeKey")

	checkNLB(t, dir+"/nlb.cfn.yaml", c.Name, listeners, admin)
}
