package integration

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type ecsTaskDefinition struct {
	ContainerDefinitions []struct {
		Name         string   `yaml:"name"`
		Command      []string `yaml:"command"`
		PortMappings []struct {
			ContainerPort int    `yaml:"containerPort"`
			Protocol      string `yaml:"protocol"`
		} `yaml:"portMappings"`
		Secrets     []ecsSecret `yaml:"secrets"`
		StopTimeout int         `yaml:"stopTimeout"`
	} `yaml:"containerDefinitions"`
}

type ecsSecret struct {
	Name string `yaml:"name"`
}

type iamPolicy struct {
	Statement []struct {
		Effect   string   `yaml:"Effect"`
		Action   []string `yaml:"Action"`
		Resource string   `yaml:"Resource"`
	} `yaml:"Statement"`
}

// cfnTemplate is a CloudFormation template; intrinsic functions (!Ref X)
// read as their argument.
type cfnTemplate struct {
	Resources map[string]struct {
		Type       string         `yaml:"Type"`
		Properties map[string]any `yaml:"Properties"`
	} `yaml:"Resources"`
}

// dockerfileFiles maps the destination of each COPY/ADD of a Dockerfile to
// its source.
func dockerfileFiles(text string) map[string]string {
	files := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || (f[0] != "COPY" && f[0] != "ADD") {
			continue
		}
		files[f[len(f)-1]] = f[len(f)-2]
	}
	return files
}

// checkIAM checks that the policy allows each action on the key keyID.
func checkIAM(t *testing.T, rel, keyID string, actions ...string) {
	t.Helper()
	var pol iamPolicy
	parseYAML(t, rel, &pol)
	for _, a := range actions {
		ok := false
		for _, s := range pol.Statement {
			ok = ok || s.Effect == "Allow" && s.Resource == keyID && slices.Contains(s.Action, a)
		}
		if !ok {
			t.Errorf("%s does not allow %s on %s (keys.master_key.key_id)", rel, a, keyID)
		}
	}
}

// checkNLB checks the CloudFormation fragment: one TCP target group per
// listener port, health-checked with HTTP GET /readyz on the admin port,
// without connection termination at the end of the deregistration delay;
// the ECS service registers container's listener ports in them.
func checkNLB(t *testing.T, rel, container string, listeners []int, admin int) {
	t.Helper()
	var tpl cfnTemplate
	parseYAML(t, rel, &tpl)
	groups := map[int]string{} // port -> target group resource
	var lbs []any
	for name, r := range tpl.Resources {
		p := r.Properties
		switch r.Type {
		case "AWS::ElasticLoadBalancingV2::TargetGroup":
			port, _ := p["Port"].(int)
			groups[port] = name
			if p["Protocol"] != "TCP" || p["HealthCheckProtocol"] != "HTTP" || p["HealthCheckPath"] != "/readyz" || p["HealthCheckPort"] != strconv.Itoa(admin) {
				t.Errorf("%s %s: want protocol TCP, health check HTTP /readyz on port %d; got %v", rel, name, admin, p)
			}
			attrs := map[string]any{}
			for _, a := range p["TargetGroupAttributes"].([]any) {
				kv := a.(map[string]any)
				attrs[kv["Key"].(string)] = kv["Value"]
			}
			if attrs["deregistration_delay.timeout_seconds"] == nil || attrs["deregistration_delay.connection_termination.enabled"] == "true" {
				t.Errorf("%s %s: want a deregistration delay, without connection termination; got %v", rel, name, attrs)
			}
			if attrs["stickiness.enabled"] != "true" || attrs["stickiness.type"] != "source_ip" {
				t.Errorf("%s %s: want source_ip stickiness, so that a client's query cancels reach the task holding its session; got %v", rel, name, attrs)
			}
		case "AWS::ECS::Service":
			lbs = p["LoadBalancers"].([]any)
		}
	}
	if ports := slices.Sorted(maps.Keys(groups)); !slices.Equal(ports, sortedInts(listeners...)) {
		t.Errorf("%s: target groups on ports %v, the listeners listen on %v", rel, ports, listeners)
	}
	registered := map[int]bool{}
	for _, x := range lbs {
		lb := x.(map[string]any)
		port, _ := lb["ContainerPort"].(int)
		if lb["ContainerName"] != container || lb["TargetGroupArn"] != groups[port] {
			t.Errorf("%s: the service registers %v, want container %s port %d in %s", rel, lb, container, port, groups[port])
		}
		registered[port] = true
	}
	if len(registered) != len(listeners) {
		t.Errorf("%s: the service registers ports %v, the listeners listen on %v", rel, registered, listeners)
	}
}
