package integration

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dbproxy/dbproxy/config"
)

// k8sObject is one document of a manifest file: its kind and name, and
// the document itself for decoding by kind.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	node yaml.Node
}

type k8sLabels struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// k8sWorkload is a Deployment or a Job.
type k8sWorkload struct {
	Spec struct {
		Replicas int       `yaml:"replicas"`
		Selector k8sLabels `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec k8sPod `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sPod struct {
	TerminationGracePeriodSeconds int            `yaml:"terminationGracePeriodSeconds"`
	InitContainers                []k8sContainer `yaml:"initContainers"`
	Containers                    []k8sContainer `yaml:"containers"`
	Volumes                       []k8sVolume    `yaml:"volumes"`
}

type k8sContainer struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Ports   []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	Env []struct {
		Name      string `yaml:"name"`
		ValueFrom struct {
			SecretKeyRef *k8sSecretKey `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
	} `yaml:"volumeMounts"`
	ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
	LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Exec struct {
				Command []string `yaml:"command"`
			} `yaml:"exec"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
}

type k8sSecretKey struct {
	Name string `yaml:"name"`
	Key  string `yaml:"key"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

type k8sKeyPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
}

type k8sVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name  string       `yaml:"name"`
		Items []k8sKeyPath `yaml:"items"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string       `yaml:"secretName"`
		Items      []k8sKeyPath `yaml:"items"`
	} `yaml:"secret"`
	EmptyDir *struct {
		Medium string `yaml:"medium"`
	} `yaml:"emptyDir"`
}

type k8sService struct {
	Spec struct {
		SessionAffinity string            `yaml:"sessionAffinity"`
		Selector        map[string]string `yaml:"selector"`
		Ports           []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
			Protocol   string `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type k8sPDB struct {
	Spec struct {
		MaxUnavailable *int      `yaml:"maxUnavailable"`
		MinAvailable   *int      `yaml:"minAvailable"`
		Selector       k8sLabels `yaml:"selector"`
	} `yaml:"spec"`
}

// k8sManifests reads every document of the YAML files in dir.
func k8sManifests(t *testing.T, dir string) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("%s: no manifests (%v)", dir, err)
	}
	var objs []k8sObject
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o k8sObject
			err := dec.Decode(&o.node)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if err := o.node.Decode(&o); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

// k8sFind decodes the one object of kind and name into v.
func k8sFind(t *testing.T, objs []k8sObject, kind, name string, v any) {
	t.Helper()
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			if err := o.node.Decode(v); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return
		}
	}
	t.Fatalf("no %s named %s", kind, name)
}

// checkK8sPod checks the dbproxy container of a pod template against the
// configuration it is given with --config: that file comes from a
// ConfigMap mounted at its directory and loads; the master key file is
// where the init container copies it from the Secret, private; every
// password variable comes from a Secret. It records the Secret keys used
// in secretKeys and returns the configuration.
func checkK8sPod(t *testing.T, objs []k8sObject, what string, pod *k8sPod, serving bool, secretKeys map[k8sSecretKey]bool) *config.Config {
	t.Helper()
	c := k8sContainerNamed(t, what, pod.Containers, "dbproxy")
	cfgPath := configFlag(t, what, c.Args)
	vol := k8sMountedVolume(t, what, pod, c, path.Dir(cfgPath))
	if vol.ConfigMap == nil {
		t.Fatalf("%s: %s is not a ConfigMap volume", what, path.Dir(cfgPath))
	}
	key := path.Base(cfgPath)
	for _, it := range vol.ConfigMap.Items {
		if it.Path == key {
			key = it.Key
		}
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	k8sFind(t, objs, "ConfigMap", vol.ConfigMap.Name, &cm)
	text, ok := cm.Data[key]
	if !ok {
		t.Fatalf("%s: ConfigMap %s has no key %s (--config %s)", what, vol.ConfigMap.Name, key, cfgPath)
	}
	cfg := loadConfigText(t, "ConfigMap "+vol.ConfigMap.Name+" "+key, text, path.Base(cfgPath))

	if cfg.Keys.MasterKey.Provider == config.ProviderLocal {
		checkK8sMasterKey(t, what, pod, c, cfg.Keys.MasterKey.File, secretKeys)
	}
	for _, env := range passwordEnvs(cfg, serving) {
		found := false
		for _, e := range c.Env {
			if e.Name == env && e.ValueFrom.SecretKeyRef != nil {
				found = true
				secretKeys[*e.ValueFrom.SecretKeyRef] = true
			}
		}
		if !found {
			t.Errorf("%s: the configuration reads a password from $%s, which the container does not take from a Secret", what, env)
		}
	}
	if cfg.Keys.Store.Type != config.StoreDatabase {
		t.Errorf("%s: keystore type %s; replicas share a database keystore", what, cfg.Keys.Store.Type)
	}
	return cfg
}

// checkK8sMasterKey checks that keyFile is in an in-memory emptyDir of the
// dbproxy container c, filled by an init container that installs it from
// a Secret volume with a mode that group and others cannot read.
func checkK8sMasterKey(t *testing.T, what string, pod *k8sPod, c *k8sContainer, keyFile string, secretKeys map[k8sSecretKey]bool) {
	t.Helper()
	dst := k8sMountedVolume(t, what, pod, c, path.Dir(keyFile))
	if dst.EmptyDir == nil || dst.EmptyDir.Medium != "Memory" {
		t.Errorf("%s: the master key file %s is not in an in-memory emptyDir", what, keyFile)
	}
	for i := range pod.InitContainers {
		ic := &pod.InitContainers[i]
		cmd := ic.Command
		if len(cmd) < 5 || cmd[0] != "install" || cmd[len(cmd)-1] != keyFile {
			continue
		}
		if k8sMountedVolume(t, what, pod, ic, path.Dir(keyFile)).Name != dst.Name {
			t.Errorf("%s: init container %s writes %s into another volume than the dbproxy container reads", what, ic.Name, keyFile)
		}
		mode := uint64(0o777)
		if m := slices.Index(cmd, "-m"); m >= 0 {
			if v, err := strconv.ParseUint(cmd[m+1], 8, 32); err == nil {
				mode = v
			}
		}
		if mode&0o077 != 0 {
			t.Errorf("%s: init container %s installs the master key with %q: want a mode without group or other bits", what, ic.Name, cmd)
		}
		src := cmd[len(cmd)-2]
		sv := k8sMountedVolume(t, what, pod, ic, path.Dir(src))
		if sv.Secret == nil {
			t.Fatalf("%s: init container %s copies %s from a volume that is not a Secret", what, ic.Name, src)
		}
		key := path.Base(src)
		if len(sv.Secret.Items) > 0 {
			key = ""
			for _, it := range sv.Secret.Items {
				if it.Path == path.Base(src) {
					key = it.Key
				}
			}
		}
		if key == "" {
			t.Fatalf("%s: Secret volume %s does not project %s", what, sv.Name, path.Base(src))
		}
		secretKeys[k8sSecretKey{Name: sv.Secret.SecretName, Key: key}] = true
		return
	}
	t.Errorf("%s: no init container installs the master key file %s", what, keyFile)
}

// k8sMountedVolume is the volume c mounts at dir (whole, not a subPath).
func k8sMountedVolume(t *testing.T, what string, pod *k8sPod, c *k8sContainer, dir string) *k8sVolume {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) || m.SubPath != "" {
			continue
		}
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == m.Name {
				return &pod.Volumes[i]
			}
		}
		t.Fatalf("%s: container %s mounts the undeclared volume %s", what, c.Name, m.Name)
	}
	t.Fatalf("%s: container %s mounts nothing at %s", what, c.Name, dir)
	return nil
}

func k8sContainerNamed(t *testing.T, what string, cs []k8sContainer, name string) *k8sContainer {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("%s: no container %s", what, name)
	return nil
}

// k8sPort resolves a probe or Service target port (a number or a port
// name of c) to a number; 0 if it names no port.
func k8sPort(c *k8sContainer, port string) int {
	if n, err := strconv.Atoi(port); err == nil {
		return n
	}
	for _, p := range c.Ports {
		if p.Name == port {
			return p.ContainerPort
		}
	}
	return 0
}

// checkK8sServing checks the serving Deployment against cfg: container
// ports, probes, the shutdown budget, the Service and the
// PodDisruptionBudget.
func checkK8sServing(t *testing.T, objs []k8sObject, dep *k8sWorkload, cfg *config.Config) {
	t.Helper()
	pod := &dep.Spec.Template.Spec
	c := k8sContainerNamed(t, "Deployment dbproxy", pod.Containers, "dbproxy")
	listeners, admin := servedPorts(t, cfg)
	var exposed []int
	for _, p := range c.Ports {
		exposed = append(exposed, p.ContainerPort)
	}
	if want := sortedInts(append(slices.Clone(listeners), admin)...); !slices.Equal(sortedInts(exposed...), want) {
		t.Errorf("container ports %v, the configuration listens on %v", exposed, want)
	}
	for _, pr := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}} {
		if pr.probe == nil {
			t.Errorf("no %s", pr.name)
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path || k8sPort(c, pr.probe.HTTPGet.Port) != admin {
			t.Errorf("%s gets %s on port %s, want %s on the admin port %d", pr.name, pr.probe.HTTPGet.Path, pr.probe.HTTPGet.Port, pr.path, admin)
		}
	}

	var preStop time.Duration
	if ps := c.Lifecycle.PreStop; ps != nil {
		cmd := ps.Exec.Command
		n, err := strconv.Atoi(cmd[len(cmd)-1])
		if len(cmd) != 2 || cmd[0] != "sleep" || err != nil {
			t.Fatalf("preStop runs %q, want sleep SECONDS", cmd)
		}
		preStop = time.Duration(n) * time.Second
	}
	if grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second; grace <= preStop+cfg.ShutdownTimeout+adminShutdown {
		t.Errorf("terminationGracePeriodSeconds %v must exceed preStop %v + shutdown_timeout %v + admin shutdown %v", grace, preStop, cfg.ShutdownTimeout, adminShutdown)
	}

	labels := dep.Spec.Template.Metadata.Labels
	var svc k8sService
	k8sFind(t, objs, "Service", "dbproxy", &svc)
	if svc.Spec.SessionAffinity != "ClientIP" {
		t.Errorf("Service sessionAffinity %q: want ClientIP, so that a client's query cancels reach the replica holding its session", svc.Spec.SessionAffinity)
	}
	if !labelsMatch(svc.Spec.Selector, labels) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, labels)
	}
	var targets []int
	for _, p := range svc.Spec.Ports {
		if p.Protocol != "TCP" {
			t.Errorf("Service port %s: protocol %s, want TCP", p.Name, p.Protocol)
		}
		targets = append(targets, k8sPort(c, p.TargetPort))
	}
	if !slices.Equal(sortedInts(targets...), sortedInts(listeners...)) {
		t.Errorf("Service targets ports %v, the listeners listen on %v", targets, listeners)
	}

	var pdb k8sPDB
	k8sFind(t, objs, "PodDisruptionBudget", "dbproxy", &pdb)
	if !labelsMatch(pdb.Spec.Selector.MatchLabels, labels) || !labelsMatch(dep.Spec.Selector.MatchLabels, labels) {
		t.Errorf("PodDisruptionBudget or Deployment selector does not select the pods %v", labels)
	}
	n := dep.Spec.Replicas
	if n < 2 || (pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable < 1 || *pdb.Spec.MaxUnavailable >= n) && (pdb.Spec.MinAvailable == nil || *pdb.Spec.MinAvailable >= n) {
		t.Errorf("%d replicas with that PodDisruptionBudget: want at least 2, and a budget that lets one go", n)
	}
}

func labelsMatch(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}
