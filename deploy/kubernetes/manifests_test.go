package kubernetes_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/dcounter/dcounter/internal/api"
	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/testutil"
)

// dcounterBin is the binary TestMain builds from this module: the
// manifests are checked against what it really accepts.
var dcounterBin string

func TestMain(m *testing.M) { os.Exit(testutil.RunWithBinary(m, "../../cmd/dcounter", &dcounterBin)) }

// Facts about the binary and image that the manifests must respect and
// that no flag reports.
const (
	// shutdownBudget bounds a node's stop after its drain (the timeout
	// around node.Shutdown in cmd/dcounter/node.go).
	shutdownBudget = 10 * time.Second
	// imageUser is the Dockerfile's USER.
	imageUser = 65532
	// exampleSecret is the file documenting the Secret; it is not applied.
	exampleSecret = "secret.example.yaml"
)

// kustomization is the part of kustomize's Kustomization these manifests
// use; decoding strictly into it makes any other field an error, so that
// a field added later is added here on purpose.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// manifests is every object in the directory, by kind.
type manifests struct {
	statefulSets []*appsv1.StatefulSet
	deployments  []*appsv1.Deployment
	services     []*corev1.Service
	pdbs         []*policyv1.PodDisruptionBudget
	secrets      []*corev1.Secret
	files        map[string][]string // file → "Kind/name" of its objects
}

// decodeStrict decodes one YAML document into out: unknown fields,
// duplicate keys and trailing data are errors.
func decodeStrict(doc []byte, out any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the object")
	}
	return nil
}

// documents splits a YAML stream at its "---" lines, dropping documents
// that hold only comments.
func documents(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		for _, l := range strings.Split(cur.String(), "\n") {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
				docs = append(docs, bytes.Clone(cur.Bytes()))
				break
			}
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), " ") == "---" {
			flush()
			continue
		}
		cur.WriteString(sc.Text())
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

// wantAPIVersion is the API version each kind must be written in.
var wantAPIVersion = map[string]string{
	"StatefulSet":         "apps/v1",
	"Deployment":          "apps/v1",
	"Service":             "v1",
	"PodDisruptionBudget": "policy/v1",
	"Secret":              "v1",
}

// decodeObject decodes one manifest document into its typed object.
func decodeObject(doc []byte, m *manifests) (string, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return "", err
	}
	want, ok := wantAPIVersion[tm.Kind]
	if !ok {
		return "", fmt.Errorf("kind %q: not one this test knows (add it, and its checks)", tm.Kind)
	}
	if tm.APIVersion != want {
		return "", fmt.Errorf("%s: apiVersion %q, want %q", tm.Kind, tm.APIVersion, want)
	}
	var (
		obj  any
		meta *metav1.ObjectMeta
	)
	switch tm.Kind {
	case "StatefulSet":
		o := new(appsv1.StatefulSet)
		m.statefulSets, obj, meta = append(m.statefulSets, o), o, &o.ObjectMeta
	case "Deployment":
		o := new(appsv1.Deployment)
		m.deployments, obj, meta = append(m.deployments, o), o, &o.ObjectMeta
	case "Service":
		o := new(corev1.Service)
		m.services, obj, meta = append(m.services, o), o, &o.ObjectMeta
	case "PodDisruptionBudget":
		o := new(policyv1.PodDisruptionBudget)
		m.pdbs, obj, meta = append(m.pdbs, o), o, &o.ObjectMeta
	case "Secret":
		o := new(corev1.Secret)
		m.secrets, obj, meta = append(m.secrets, o), o, &o.ObjectMeta
	}
	if err := decodeStrict(doc, obj); err != nil {
		return "", fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if meta.Name == "" {
		return "", fmt.Errorf("%s without a name", tm.Kind)
	}
	if meta.Namespace != "" {
		return "", fmt.Errorf("%s/%s names namespace %q: the manifests must go to any namespace", tm.Kind, meta.Name, meta.Namespace)
	}
	return tm.Kind + "/" + meta.Name, nil
}

func loadKustomization(t *testing.T) kustomization {
	t.Helper()
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := decodeStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	return k
}

// load decodes every YAML file in the directory (the example Secret too).
func load(t *testing.T) *manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := &manifests{files: map[string][]string{}}
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs := documents(b)
		if len(docs) == 0 {
			t.Errorf("%s: no object", f)
		}
		for i, doc := range docs {
			id, err := decodeObject(doc, m)
			if err != nil {
				t.Fatalf("%s, document %d: %v", f, i+1, err)
			}
			m.files[f] = append(m.files[f], id)
		}
	}
	return m
}

// one returns the single element of xs.
func one[T any](t *testing.T, what string, xs []T) T {
	t.Helper()
	if len(xs) != 1 {
		t.Fatalf("%d %s, want 1", len(xs), what)
	}
	return xs[0]
}

func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	// The checks below are only as strict as the decoder: a misspelt field
	// must fail, not vanish.
	bad := []string{
		"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {replicas: 1, podManagmentPolicy: Parallel}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: None, publishNotReadyAdresses: true}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {clusterIP: None}\nspec: {clusterIP: None}\n",
	}
	for _, doc := range bad {
		if _, err := decodeObject([]byte(doc), &manifests{}); err == nil {
			t.Errorf("decoded without error:\n%s", doc)
		}
	}
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	k := loadKustomization(t)
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml is %s %s", k.APIVersion, k.Kind)
	}
	if k.Namespace != "" {
		t.Errorf("kustomization.yaml pins namespace %q: leave it to the user", k.Namespace)
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if f != "kustomization.yaml" && f != exampleSecret {
			want = append(want, f)
		}
	}
	got := slices.Clone(k.Resources)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("kustomization resources %v, want every manifest but the example Secret: %v", got, want)
	}
	if slices.Contains(k.Resources, exampleSecret) {
		t.Errorf("the example Secret is applied: its placeholders would replace the real Secret")
	}
	m := load(t)
	for _, f := range k.Resources {
		if len(m.files[f]) == 0 {
			t.Errorf("kustomization lists %s, which holds no object", f)
		}
	}
	// Every container's image is the one the kustomization rewrites.
	var names []string
	for _, img := range k.Images {
		names = append(names, img.Name)
	}
	for _, w := range workloads(m) {
		for _, c := range w.pod.Spec.Containers {
			name, _, _ := strings.Cut(c.Image, ":")
			if !slices.Contains(names, name) {
				t.Errorf("%s: image %q is not among the kustomization's images %v", w.id, c.Image, names)
			}
		}
	}
}

// workload is a pod template and what owns it.
type workload struct {
	id  string
	pod *corev1.PodTemplateSpec
	sel *metav1.LabelSelector
}

func workloads(m *manifests) []workload {
	var ws []workload
	for _, s := range m.statefulSets {
		ws = append(ws, workload{"StatefulSet/" + s.Name, &s.Spec.Template, s.Spec.Selector})
	}
	for _, d := range m.deployments {
		ws = append(ws, workload{"Deployment/" + d.Name, &d.Spec.Template, d.Spec.Selector})
	}
	return ws
}

// flagInfo is one flag as the binary's --help describes it.
type flagInfo struct {
	name, def  string
	env        []string // the variables it is read from, the command's own first
	takesValue bool
}

var (
	helpFlagLine = regexp.MustCompile(`^  --([a-z0-9-]+)(?: (\S+))?    \[(\$[A-Z0-9_]+(?:, \$[A-Z0-9_]+)*)\]$`)
	helpDefault  = regexp.MustCompile(`\(default ([^()]*)\)$`)
)

// commandFlags runs `dcounter CMD --help` and returns its flags by name.
func commandFlags(t *testing.T, cmd string) map[string]flagInfo {
	t.Helper()
	out, err := exec.Command(dcounterBin, cmd, "--help").Output()
	if err != nil {
		t.Fatalf("dcounter %s --help: %v", cmd, err)
	}
	flags := map[string]flagInfo{}
	var last string
	for _, l := range strings.Split(string(out), "\n") {
		if m := helpFlagLine.FindStringSubmatch(l); m != nil {
			// Boolean flags show no value name.
			var envs []string
			for _, v := range strings.Split(m[3], ", ") {
				envs = append(envs, strings.TrimPrefix(v, "$"))
			}
			flags[m[1]] = flagInfo{name: m[1], env: envs, takesValue: m[2] != ""}
			last = m[1]
			continue
		}
		if last != "" && strings.HasPrefix(l, "      ") {
			if d := helpDefault.FindStringSubmatch(l); d != nil {
				f := flags[last]
				f.def = d[1]
				flags[last] = f
			}
		}
	}
	if len(flags) < 5 {
		t.Fatalf("dcounter %s --help: found only %d flags; has its format changed?\n%s", cmd, len(flags), out)
	}
	return flags
}

// parseArgs walks a container's args as dcounter's flag package would and
// returns the subcommand and each flag's value ("true" for a bare boolean).
func parseArgs(t *testing.T, id string, args []string, flagsOf func(cmd string) map[string]flagInfo) (string, map[string]string) {
	t.Helper()
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		t.Fatalf("%s: args %q do not start with a subcommand", id, args)
	}
	cmd, flags := args[0], flagsOf(args[0])
	vals := map[string]string{}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			t.Errorf("%s: stray argument %q (a value without its flag?)", id, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		f, ok := flags[name]
		if !ok {
			t.Errorf("%s: dcounter %s has no flag --%s", id, cmd, name)
			continue
		}
		if _, dup := vals[name]; dup {
			t.Errorf("%s: --%s given twice", id, name)
		}
		switch {
		case hasVal:
		case f.takesValue:
			if i+1 == len(args) {
				t.Errorf("%s: --%s without its value", id, name)
				continue
			}
			i++
			val = args[i]
		default:
			val = "true"
		}
		vals[name] = val
	}
	return cmd, vals
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expand substitutes $(VAR) references as the kubelet does, from env.
func expand(s string, env map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(ref string) string {
		if v, ok := env[ref[2:len(ref)-1]]; ok {
			return v
		}
		return ref
	})
}

// container is one checked container: its flags as parsed, and its
// environment with downward-API values replaced by examples.
type container struct {
	id    string
	w     workload
	c     *corev1.Container
	cmd   string
	flags map[string]string // from args, then from DCOUNTER_* env
	env   map[string]string
	help  map[string]flagInfo
}

// downwardExample stands in for a downward-API field when expanding.
var downwardExample = map[string]string{
	"metadata.name":      "dcounter-0",
	"metadata.namespace": "default",
	"status.podIP":       "10.1.2.3",
}

// containers checks and parses every container's args and environment
// against the binary: each flag exists and takes the value given, each
// DCOUNTER_* variable is a flag's, each other variable is used by a
// $(VAR) reference, and every reference is to a variable defined before.
func containers(t *testing.T, m *manifests) []*container {
	t.Helper()
	helps := map[string]map[string]flagInfo{}
	flagsOf := func(cmd string) map[string]flagInfo {
		if helps[cmd] == nil {
			helps[cmd] = commandFlags(t, cmd)
		}
		return helps[cmd]
	}
	var out []*container
	for _, w := range workloads(m) {
		for i := range w.pod.Spec.Containers {
			c := &w.pod.Spec.Containers[i]
			id := w.id + "/" + c.Name
			if len(c.Command) != 0 {
				t.Errorf("%s: command %q overrides the image's entrypoint (/dcounter): use args", id, c.Command)
			}
			cmd, vals := parseArgs(t, id, c.Args, flagsOf)
			help := flagsOf(cmd)
			byEnv := map[string]flagInfo{}
			for _, f := range help {
				for _, e := range f.env {
					byEnv[e] = f
				}
			}
			env := map[string]string{}
			used := map[string]bool{}
			for _, e := range c.Env {
				if _, dup := env[e.Name]; dup {
					t.Errorf("%s: env %s set twice", id, e.Name)
				}
				for _, r := range varRef.FindAllStringSubmatch(e.Value, -1) {
					if _, ok := env[r[1]]; !ok {
						t.Errorf("%s: env %s refers to $(%s), not defined before it: the kubelet would pass it literally", id, e.Name, r[1])
					}
					used[r[1]] = true
				}
				switch {
				case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
					ex, ok := downwardExample[e.ValueFrom.FieldRef.FieldPath]
					if !ok {
						t.Errorf("%s: env %s from field %s, which this test has no example for", id, e.Name, e.ValueFrom.FieldRef.FieldPath)
					}
					env[e.Name] = ex
				case e.ValueFrom != nil:
					t.Errorf("%s: env %s from a source this test does not check", id, e.Name)
				default:
					env[e.Name] = expand(e.Value, env)
				}
			}
			for i, a := range c.Args {
				for _, r := range varRef.FindAllStringSubmatch(a, -1) {
					if _, ok := env[r[1]]; !ok {
						t.Errorf("%s: argument %d %q refers to $(%s), which the container's env does not define", id, i, a, r[1])
					}
					used[r[1]] = true
				}
			}
			for name, v := range vals {
				vals[name] = expand(v, env)
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "DCOUNTER_") {
					f, ok := byEnv[e.Name]
					if !ok {
						t.Errorf("%s: env %s is no flag's variable in dcounter %s", id, e.Name, cmd)
						continue
					}
					if _, both := vals[f.name]; both {
						t.Errorf("%s: --%s given both as an argument and as %s", id, f.name, e.Name)
					}
					vals[f.name] = env[e.Name]
				} else if !used[e.Name] {
					t.Errorf("%s: env %s is neither a dcounter variable nor used by a $(%s) reference", id, e.Name, e.Name)
				}
			}
			out = append(out, &container{id: id, w: w, c: c, cmd: cmd, flags: vals, env: env, help: help})
		}
	}
	if len(out) == 0 {
		t.Fatal("no containers")
	}
	return out
}

// flag returns the value of the flag in force: given, or the default.
func (c *container) flag(name string) string {
	if v, ok := c.flags[name]; ok {
		return v
	}
	return c.help[name].def
}

func TestArgsAndEnvMatchTheBinary(t *testing.T) {
	m := load(t)
	for _, c := range containers(t, m) {
		// The binary itself parses the args (with every $(VAR) replaced by
		// an example): --help after them exits 0 only if every flag before
		// it exists and its value parses (durations, numbers, booleans).
		args := make([]string, len(c.c.Args))
		for i, a := range c.c.Args {
			args[i] = expand(a, c.env)
		}
		out, err := exec.Command(dcounterBin, append(args, "--help")...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: dcounter %s --help: %v\n%s", c.id, strings.Join(args, " "), err, out)
		}
		// The join value's syntax (dns+host:port, dnssrv+name) belongs to
		// the DNS join; here it must at least name the gossip Service.
		if j, ok := c.flags["join"]; ok {
			svc := one(t, "StatefulSets", m.statefulSets).Spec.ServiceName
			if !strings.Contains(j, svc) {
				t.Errorf("%s: --join %q does not name the gossip Service %s", c.id, j, svc)
			}
		}
	}
}

// hostPort splits a host:port flag value.
func hostPort(t *testing.T, id, flag, v string) (string, int32) {
	t.Helper()
	h, p, err := net.SplitHostPort(v)
	if err != nil {
		t.Fatalf("%s: --%s %q: %v", id, flag, v, err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		t.Fatalf("%s: --%s %q: bad port", id, flag, v)
	}
	return h, int32(n)
}

// listeners maps each container port name to the flag whose address it
// serves, per subcommand.
var listeners = map[string]map[string]string{
	"node":    {"gossip": "gossip-addr", "http": "http-addr", "resp": "resp-addr"},
	"gateway": {"http": "http-addr"},
}

func TestContainerPortsMatchListeners(t *testing.T) {
	m := load(t)
	for _, c := range containers(t, m) {
		want := listeners[c.cmd]
		if want == nil {
			t.Errorf("%s: subcommand %q has no known listeners", c.id, c.cmd)
			continue
		}
		named := map[string]bool{}
		for _, p := range c.c.Ports {
			flag, ok := want[p.Name]
			if !ok {
				t.Errorf("%s: container port %q (%d) serves no listener", c.id, p.Name, p.ContainerPort)
				continue
			}
			named[p.Name] = true
			v := c.flag(flag)
			if v == "" {
				t.Errorf("%s: container port %s, but --%s is off", c.id, p.Name, flag)
				continue
			}
			host, port := hostPort(t, c.id, flag, v)
			if port != p.ContainerPort {
				t.Errorf("%s: container port %s is %d, --%s listens on %d", c.id, p.Name, p.ContainerPort, flag, port)
			}
			// A pod is reached on its own address: a loopback listener
			// would be unreachable, a pod-IP one breaks port-forward.
			if host != "0.0.0.0" && host != "::" && host != "" {
				t.Errorf("%s: --%s %s listens on %s only, not on every interface of the pod", c.id, flag, v, host)
			}
			if p.Protocol != corev1.ProtocolTCP && p.Protocol != "" {
				t.Errorf("%s: container port %s is %s: dcounter speaks TCP only", c.id, p.Name, p.Protocol)
			}
		}
		for name, flag := range want {
			if !named[name] && c.flag(flag) != "" {
				t.Errorf("%s: --%s %s has no container port named %s", c.id, flag, c.flag(flag), name)
			}
		}
		if c.cmd == "node" {
			// Peers dial the advertised address: it must be this pod's,
			// on the gossip port.
			host, port := hostPort(t, c.id, "advertise-addr", c.flag("advertise-addr"))
			if host != downwardExample["status.podIP"] {
				t.Errorf("%s: --advertise-addr host %q is not the pod IP (want $(POD_IP) from status.podIP)", c.id, host)
			}
			if _, gp := hostPort(t, c.id, "gossip-addr", c.flag("gossip-addr")); port != gp {
				t.Errorf("%s: --advertise-addr port %d, gossip listens on %d", c.id, port, gp)
			}
			if c.flag("name") != downwardExample["metadata.name"] {
				t.Errorf("%s: --name %q is not the pod name", c.id, c.flag("name"))
			}
		}
	}
}

// containerPort resolves a probe's or Service's target port (a name or a
// number) to a container port.
func containerPort(c *corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return cp, true
		}
	}
	return corev1.ContainerPort{}, false
}

func TestProbesUseRealRoutes(t *testing.T) {
	m := load(t)
	for _, c := range containers(t, m) {
		probes := map[string]*corev1.Probe{"startup": c.c.StartupProbe, "readiness": c.c.ReadinessProbe, "liveness": c.c.LivenessProbe}
		if c.c.ReadinessProbe == nil || c.c.LivenessProbe == nil {
			t.Errorf("%s: needs both a readiness and a liveness probe", c.id)
		}
		for kind, p := range probes {
			if p == nil {
				continue
			}
			switch {
			case p.HTTPGet != nil:
				cp, ok := containerPort(c.c, p.HTTPGet.Port)
				if !ok || cp.Name != "http" {
					t.Errorf("%s: %s probe on port %s, not the HTTP listener's", c.id, kind, p.HTTPGet.Port.String())
				}
				if c.flag("tls-cert") == "" && p.HTTPGet.Scheme != "" && p.HTTPGet.Scheme != corev1.URISchemeHTTP {
					t.Errorf("%s: %s probe over %s, but the API serves plain HTTP", c.id, kind, p.HTTPGet.Scheme)
				}
				// The kubelet sends no token: the route must be one an
				// anonymous caller gets a 2xx from while all is well.
				r := httptest.NewRequest("GET", p.HTTPGet.Path, nil)
				rt, err := api.Match(httptest.NewRecorder(), r)
				if err != nil {
					t.Errorf("%s: %s probe GET %s: no such route: %v", c.id, kind, p.HTTPGet.Path, err)
				} else if need := api.RequiredRole(rt.Kind); c.flag("auth-file") != "" && need != auth.RoleNone {
					t.Errorf("%s: %s probe GET %s needs the %s role; the kubelet has no token (401)", c.id, kind, p.HTTPGet.Path, need)
				}
			case p.TCPSocket != nil:
				if _, ok := containerPort(c.c, p.TCPSocket.Port); !ok {
					t.Errorf("%s: %s probe on port %s, which the container does not declare", c.id, kind, p.TCPSocket.Port.String())
				}
			default:
				// An exec probe (dcounter health URL) would start a process
				// per probe; the kubelet can ask the listener itself.
				t.Errorf("%s: %s probe is neither HTTP GET nor TCP", c.id, kind)
			}
		}
	}
}

// selects reports whether a Service's selector (a plain map) selects
// pods with labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// labelSelects reports whether a LabelSelector of matchLabels only
// selects pods with labels.
func labelSelects(t *testing.T, what string, sel *metav1.LabelSelector, labels map[string]string) bool {
	t.Helper()
	if sel == nil || len(sel.MatchExpressions) != 0 {
		t.Fatalf("%s: selector must be matchLabels only, got %+v", what, sel)
	}
	return selects(sel.MatchLabels, labels)
}

func TestSelectorsSelectTheirPods(t *testing.T) {
	m := load(t)
	sts := one(t, "StatefulSets", m.statefulSets)
	gw := one(t, "Deployments", m.deployments)
	for _, w := range workloads(m) {
		if !labelSelects(t, w.id, w.sel, w.pod.Labels) {
			t.Errorf("%s: selector %v does not select its own pods %v", w.id, w.sel.MatchLabels, w.pod.Labels)
		}
	}
	// Each Service selects exactly one workload's pods, and its target
	// ports are that workload's container ports.
	wantTarget := map[string]string{
		"dcounter-gossip":  "StatefulSet/" + sts.Name,
		"dcounter":         "StatefulSet/" + sts.Name,
		"dcounter-gateway": "Deployment/" + gw.Name,
	}
	for _, svc := range m.services {
		var hit []workload
		for _, w := range workloads(m) {
			if selects(svc.Spec.Selector, w.pod.Labels) {
				hit = append(hit, w)
			}
		}
		if len(hit) != 1 {
			t.Errorf("Service/%s selects %d workloads' pods, want 1", svc.Name, len(hit))
			continue
		}
		if want, ok := wantTarget[svc.Name]; !ok || hit[0].id != want {
			t.Errorf("Service/%s selects %s, want %q", svc.Name, hit[0].id, want)
		}
		for _, p := range svc.Spec.Ports {
			if p.Name == "" {
				t.Errorf("Service/%s: port %d has no name", svc.Name, p.Port)
			}
			cp, ok := containerPort(&hit[0].pod.Spec.Containers[0], p.TargetPort)
			if !ok {
				t.Errorf("Service/%s: port %s targets %s, which %s does not declare", svc.Name, p.Name, p.TargetPort.String(), hit[0].id)
				continue
			}
			if cp.Name != p.Name || cp.ContainerPort != p.Port {
				t.Errorf("Service/%s: port %s:%d reaches container port %s:%d: keep names and numbers alike", svc.Name, p.Name, p.Port, cp.Name, cp.ContainerPort)
			}
		}
	}
	pdb := one(t, "PodDisruptionBudgets", m.pdbs)
	if !labelSelects(t, "PodDisruptionBudget/"+pdb.Name, pdb.Spec.Selector, sts.Spec.Template.Labels) {
		t.Errorf("PodDisruptionBudget/%s does not select the nodes", pdb.Name)
	}
	if labelSelects(t, "PodDisruptionBudget/"+pdb.Name, pdb.Spec.Selector, gw.Spec.Template.Labels) {
		t.Errorf("PodDisruptionBudget/%s also selects the gateways", pdb.Name)
	}
	if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) || pdb.Spec.MinAvailable != nil {
		t.Errorf("PodDisruptionBudget/%s: want maxUnavailable 1 alone, got maxUnavailable %v minAvailable %v", pdb.Name, pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
	}
}

func TestGossipServiceAndNodeAddresses(t *testing.T) {
	m := load(t)
	sts := one(t, "StatefulSets", m.statefulSets)
	var gossip *corev1.Service
	for _, s := range m.services {
		if s.Name == sts.Spec.ServiceName {
			gossip = s
		}
	}
	if gossip == nil {
		t.Fatalf("StatefulSet/%s: serviceName %q is no Service here", sts.Name, sts.Spec.ServiceName)
	}
	if gossip.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service/%s: clusterIP %q, want None (headless: DNS lists every pod)", gossip.Name, gossip.Spec.ClusterIP)
	}
	if !gossip.Spec.PublishNotReadyAddresses {
		t.Errorf("Service/%s: publishNotReadyAddresses is false: nodes could not find each other before they are ready", gossip.Name)
	}
	var named bool
	for _, p := range gossip.Spec.Ports {
		// The SRV name _gossip._tcp.<service> comes from this port.
		if p.Name == "gossip" && p.Protocol == corev1.ProtocolTCP && p.Port == 7946 {
			named = true
		}
	}
	if !named {
		t.Errorf("Service/%s: no TCP port named gossip on 7946", gossip.Name)
	}

	node, gw := nodeAndGateway(t, m)
	_, httpPort := hostPort(t, node.id, "http-addr", node.flag("http-addr"))
	_, gossipPort := hostPort(t, node.id, "gossip-addr", node.flag("gossip-addr"))
	switch j := node.flag("join"); j {
	case fmt.Sprintf("dns+%s:%d", gossip.Name, gossipPort), "dnssrv+_gossip._tcp." + gossip.Name:
	default:
		t.Errorf("%s: --join %q: want dns+%s:%d or dnssrv+_gossip._tcp.%s", node.id, j, gossip.Name, gossipPort, gossip.Name)
	}
	if node.flag("bootstrap") != "true" {
		t.Errorf("%s: without --bootstrap the first pods of a new cluster exit when no peer answers", node.id)
	}
	// The gateway proves each node at the address it uses: the node must
	// advertise that very address (its stable per-pod DNS name).
	wantAdv := fmt.Sprintf("%s.%s:%d", downwardExample["metadata.name"], gossip.Name, httpPort)
	if got := node.flag("advertise-http-addr"); got != wantAdv {
		t.Errorf("%s: --advertise-http-addr %q, want %q (the name gateways use)", node.id, got, wantAdv)
	}
	// The gateway finds the nodes either by one DNS name of the headless
	// Service (every address, so it follows scaling; proofs then use the
	// pod IP, which is the node's own local address) or by each replica's
	// stable name.
	var want []string
	for i := range *sts.Spec.Replicas {
		want = append(want, fmt.Sprintf("http://%s-%d.%s:%d", sts.Name, i, gossip.Name, httpPort))
	}
	var got []string
	for _, n := range strings.Split(gw.flag("nodes"), ",") {
		n = strings.TrimSpace(n)
		if strings.HasPrefix(n, "dns+") || strings.HasPrefix(n, "dnssrv+") {
			got = append(got, n)
			continue
		}
		u, err := url.Parse(n)
		if err != nil {
			t.Errorf("%s: --nodes entry %q: %v", gw.id, n, err)
			continue
		}
		got = append(got, u.String())
	}
	dnsForm := []string{fmt.Sprintf("dns+%s:%d", gossip.Name, httpPort)}
	dnsURLForm := []string{fmt.Sprintf("dns+http://%s:%d", gossip.Name, httpPort)}
	if !slices.Equal(got, want) && !slices.Equal(got, dnsForm) && !slices.Equal(got, dnsURLForm) {
		t.Errorf("%s: --nodes %v, want every replica's stable name %v, or %v", gw.id, got, want, dnsForm)
	}
	if node.flag("cluster") != gw.flag("cluster") {
		t.Errorf("node --cluster %q, gateway --cluster %q: the gateway would prove no node", node.flag("cluster"), gw.flag("cluster"))
	}
}

func TestStatefulSetKeepsDataAndStopsCleanly(t *testing.T) {
	m := load(t)
	sts := one(t, "StatefulSets", m.statefulSets)
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy %q, want Parallel: nodes have no start order", sts.Spec.PodManagementPolicy)
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("replicas %v, want 3", sts.Spec.Replicas)
	}
	var node *container
	for _, c := range containers(t, m) {
		if c.cmd == "node" {
			node = c
		}
	}
	if node == nil {
		t.Fatal("no node container")
	}
	dataDir := node.flag("data-dir")
	if dataDir == "" || node.flag("in-memory") == "true" {
		t.Fatalf("%s: no --data-dir", node.id)
	}
	claim := one(t, "volumeClaimTemplates", sts.Spec.VolumeClaimTemplates)
	var mounted bool
	for _, vm := range node.c.VolumeMounts {
		if vm.Name == claim.Name && vm.MountPath == dataDir && !vm.ReadOnly {
			mounted = true
		}
	}
	if !mounted {
		t.Errorf("%s: claim %q is not mounted read-write at --data-dir %s", node.id, claim.Name, dataDir)
	}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == claim.Name {
			t.Errorf("pod volume %q shadows the claim template", v.Name)
		}
	}
	if q := claim.Spec.Resources.Requests[corev1.ResourceStorage]; q.IsZero() {
		t.Errorf("claim %q requests no storage", claim.Name)
	}
	if r := sts.Spec.PersistentVolumeClaimRetentionPolicy; r == nil || r.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType || r.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		t.Errorf("persistentVolumeClaimRetentionPolicy %+v: want Retain on both (a replica's data outlives its pod)", r)
	}

	// The grace period must cover the preStop pause, the drain and the
	// shutdown budget, or a rollout SIGKILLs nodes mid-stop.
	drain, err := time.ParseDuration(node.flag("shutdown-drain"))
	if err != nil {
		t.Fatalf("--shutdown-drain %q: %v", node.flag("shutdown-drain"), err)
	}
	var pause time.Duration
	if l := node.c.Lifecycle; l != nil && l.PreStop != nil {
		if l.PreStop.Sleep == nil {
			t.Errorf("%s: preStop is not a sleep (the image has no shell, and this test cannot time anything else)", node.id)
		} else {
			pause = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
		}
	}
	grace := sts.Spec.Template.Spec.TerminationGracePeriodSeconds
	need := pause + drain + shutdownBudget
	if grace == nil || time.Duration(*grace)*time.Second <= need {
		var got time.Duration = -1
		if grace != nil {
			got = time.Duration(*grace) * time.Second
		}
		t.Errorf("terminationGracePeriodSeconds %v: want more than %v (preStop %v + drain %v + shutdown %v)", got, need, pause, drain, shutdownBudget)
	}
}

func TestSecretsMatchWhatSecretsInitWrites(t *testing.T) {
	m := load(t)
	example := one(t, "Secrets", m.secrets)
	if got := m.files[exampleSecret]; len(got) != 1 || got[0] != "Secret/"+example.Name {
		t.Fatalf("%s holds %v, want the one example Secret", exampleSecret, got)
	}
	keys := map[string]bool{}
	for k := range example.StringData {
		keys[k] = true
	}
	for k := range example.Data {
		keys[k] = true
	}
	// The real Secret is made from the files `dcounter secrets init`
	// writes, one key per file: the example's keys must be those names.
	dir := filepath.Join(t.TempDir(), "secrets")
	if out, err := exec.Command(dcounterBin, "secrets", "init", dir).CombinedOutput(); err != nil {
		t.Fatalf("dcounter secrets init: %v\n%s", err, out)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var written, exampleKeys []string
	for _, e := range ents {
		written = append(written, e.Name())
	}
	for k := range keys {
		exampleKeys = append(exampleKeys, k)
	}
	slices.Sort(exampleKeys)
	if !slices.Equal(written, exampleKeys) {
		t.Errorf("the example Secret's keys %v differ from the files secrets init writes %v", exampleKeys, written)
	}

	for _, c := range containers(t, m) {
		// Every file flag points into a mounted Secret item that exists.
		for _, flag := range []string{"cluster-key-file", "auth-file"} {
			path := c.flag(flag)
			if path == "" {
				t.Errorf("%s: no --%s: off loopback the %s needs it", c.id, flag, c.cmd)
				continue
			}
			if !secretItemAt(t, c, example, keys, path) {
				t.Errorf("%s: --%s %s is not a key of Secret %s mounted read-only", c.id, flag, path, example.Name)
			}
		}
		if c.flag("cluster-key") != "" {
			t.Errorf("%s: --cluster-key on the command line (visible to every process); use the file", c.id)
		}
	}
}

// secretItemAt reports whether path is, in c, a file of a read-only mount
// of Secret s holding one of keys.
func secretItemAt(t *testing.T, c *container, s *corev1.Secret, keys map[string]bool, path string) bool {
	t.Helper()
	for _, vm := range c.c.VolumeMounts {
		rel, err := filepath.Rel(vm.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") || vm.SubPath != "" {
			continue
		}
		for _, v := range c.w.pod.Spec.Volumes {
			if v.Name != vm.Name || v.Secret == nil || v.Secret.SecretName != s.Name {
				continue
			}
			if !vm.ReadOnly {
				t.Errorf("%s: Secret volume %s mounted writable", c.id, v.Name)
			}
			if v.Secret.Optional != nil && *v.Secret.Optional {
				t.Errorf("%s: Secret volume %s is optional: a missing Secret must stop the pod, not start it without keys", c.id, v.Name)
			}
			if len(v.Secret.Items) == 0 {
				return keys[rel]
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					if !keys[it.Key] {
						t.Errorf("%s: Secret item %q is no key of the example Secret", c.id, it.Key)
					}
					return keys[it.Key]
				}
			}
		}
	}
	return false
}

func TestPodsRunLockedDown(t *testing.T) {
	m := load(t)
	df, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("\nUSER %d:%d\n", imageUser, imageUser); !strings.Contains(string(df), want) {
		t.Fatalf("Dockerfile has no %q: update imageUser", strings.TrimSpace(want))
	}
	for _, w := range workloads(m) {
		ps := w.pod.Spec
		if ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
			t.Errorf("%s: mounts a service account token it never uses", w.id)
		}
		// A Service named dcounter* would put DCOUNTER_* variables in the
		// environment, the flags' prefix.
		if ps.EnableServiceLinks == nil || *ps.EnableServiceLinks {
			t.Errorf("%s: enableServiceLinks is not false", w.id)
		}
		psc := ps.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != imageUser ||
			psc.FSGroup == nil || *psc.FSGroup != imageUser {
			t.Errorf("%s: pod securityContext %+v: want runAsNonRoot, runAsUser and fsGroup %d", w.id, psc, imageUser)
		}
		if psc != nil && (psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault) {
			t.Errorf("%s: no RuntimeDefault seccomp profile", w.id)
		}
		for _, v := range ps.Volumes {
			// fsGroup makes the files group-readable; nobody else may read.
			if v.Secret != nil && (v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0) {
				t.Errorf("%s: Secret volume %s mode %v lets other users read it", w.id, v.Name, v.Secret.DefaultMode)
			}
		}
		for _, c := range ps.Containers {
			id := w.id + "/" + c.Name
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("%s: no securityContext", id)
				continue
			case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s: root filesystem writable", id)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s: privilege escalation allowed", id)
			case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0:
				t.Errorf("%s: capabilities %+v: want every one dropped, none added", id, sc.Capabilities)
			case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != imageUser:
				t.Errorf("%s: want runAsNonRoot and runAsUser %d", id, imageUser)
			case sc.Privileged != nil && *sc.Privileged:
				t.Errorf("%s: privileged", id)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, okR := c.Resources.Requests[r]
				lim, okL := c.Resources.Limits[r]
				if !okR || !okL {
					t.Errorf("%s: %s needs both a request and a limit", id, r)
					continue
				}
				if req.Cmp(lim) > 0 {
					t.Errorf("%s: %s request %s above its limit %s", id, r, req.String(), lim.String())
				}
			}
		}
	}
}

// nodeAndGateway returns the manifests' node and gateway containers.
func nodeAndGateway(t *testing.T, m *manifests) (node, gw *container) {
	t.Helper()
	for _, c := range containers(t, m) {
		switch c.cmd {
		case "node":
			node = c
		case "gateway":
			gw = c
		}
	}
	if node == nil || gw == nil {
		t.Fatal("want a node and a gateway container")
	}
	return node, gw
}
