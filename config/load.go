package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxVisits bounds the YAML nodes one Parse walks, counting every alias
// expansion, so that a small file full of aliases cannot blow up.
const maxVisits = 200_000

// Load reads, decodes, defaults and validates the configuration file at
// path. On failure the error is an Errors listing every problem found.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		cause := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			cause = pe.Err
		}
		return nil, Errors{{File: path, Msg: fmt.Sprintf("read config: %v", cause), Err: err}}
	}
	return Parse(path, data)
}

// Parse decodes, defaults and validates a configuration whose text is data.
// path names the file in error messages, and relative paths inside the
// configuration resolve against its directory (files named by the
// configuration are checked for existence on disk). On failure the error is
// an Errors listing every problem found, each with its line and column.
// With an empty path, relative paths resolve against the working directory
// and Config.Path is empty.
func Parse(path string, data []byte) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: fmt.Sprintf("resolve config path: %v", err), Err: err}}
	}
	dir := filepath.Dir(abs)
	if path == "" {
		// No file (e.g. text from a test): resolve against the working
		// directory and leave Config.Path empty.
		dir, abs = abs, ""
	}
	d := &decoder{
		file:   path,
		dir:    dir,
		nodes:  map[string]pathInfo{},
		fields: map[reflect.Type]map[string]int{},
		bad:    map[string]bool{},
		active: map[*yaml.Node]bool{},
	}
	cfg := &Config{Path: abs}
	if root := d.document(data); root != nil {
		d.nodes[""] = pathInfo{node: root}
		d.value(root, reflect.ValueOf(cfg).Elem(), "")
		if d.exhausted {
			d.errs = append(d.errs, &FieldError{File: d.file, Line: 1, Col: 1, Msg: fmt.Sprintf("configuration too large: more than %d values after expanding aliases", maxVisits)})
		} else {
			d.validate(cfg)
		}
	}
	if len(d.errs) > 0 {
		sort.SliceStable(d.errs, func(i, j int) bool {
			a, b := d.errs[i], d.errs[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Col < b.Col
		})
		return nil, d.errs
	}
	return cfg, nil
}

// decoder walks the YAML node tree into a Config, recording the node of
// every field path so that validation can report positions.
type decoder struct {
	file string
	dir  string
	errs Errors
	// nodes maps a field path ("" for the root, "listeners[0].tls") to the
	// node its value was written at.
	nodes map[string]pathInfo
	// fields caches structFields per struct type.
	fields map[reflect.Type]map[string]int
	// bad holds the paths already reported, so a field gets one error.
	bad map[string]bool
	// active holds the alias targets being expanded (cycle guard).
	active    map[*yaml.Node]bool
	visits    int
	exhausted bool
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses data and returns the root mapping of its single
// document, or nil after recording why there is none.
func (d *decoder) document(data []byte) (root *yaml.Node) {
	defer func() {
		// The YAML parser is third-party code fed untrusted input; a
		// panic in it becomes a config error, not a crash.
		if r := recover(); r != nil {
			d.errs = append(d.errs, &FieldError{File: d.file, Line: 1, Col: 1, Msg: fmt.Sprintf("invalid YAML: parser failure: %v", r)})
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errs = append(d.errs, &FieldError{File: d.file, Line: 1, Col: 1, Msg: "empty configuration: expected a mapping with listeners, keys, encryption, log"})
		} else {
			d.syntax(err)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		d.syntax(err)
		return nil
	default:
		d.errs = append(d.errs, &FieldError{File: d.file, Line: next.Line, Col: next.Column, Msg: "multiple YAML documents: the configuration must be exactly one document"})
		return nil
	}
	if len(doc.Content) == 0 || doc.Content[0].ShortTag() == "!!null" {
		d.errs = append(d.errs, &FieldError{File: d.file, Line: max(doc.Line, 1), Col: max(doc.Column, 1), Msg: "empty configuration: expected a mapping with listeners, keys, encryption, log"})
		return nil
	}
	return doc.Content[0]
}

// yamlParserErrors are the messages of the YAML library's parser (as
// opposed to its scanner). For these it reports the 0-based line of the
// enclosing block, so the 1-based line is one more; the hint says so.
var yamlParserErrors = map[string]string{
	"did not find expected <stream-start>":   "",
	"did not find expected <document start>": "",
	"did not find expected node content":     " (in the value starting on this line)",
	"did not find expected '-' indicator":    " (in the list starting on this line: check the indentation below it)",
	"did not find expected key":              " (in the mapping starting on this line: check the indentation below it)",
	"did not find expected ',' or ']'":       " (in the [list] starting on this line)",
	"did not find expected ',' or '}'":       " (in the {mapping} starting on this line)",
	"found undefined tag handle":             "",
	"found duplicate %YAML directive":        "",
	"found incompatible YAML document":       "",
	"found duplicate %TAG directive":         "",
}

// syntax records a YAML parse error at the line the library names. The
// library reports no column, so the column is 1.
func (d *decoder) syntax(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil && n > 0 {
			line, msg = n, m[2]
		}
	}
	if hint, ok := yamlParserErrors[msg]; ok {
		line++
		msg += hint
	}
	d.errs = append(d.errs, &FieldError{File: d.file, Line: max(line, 1), Col: 1, Msg: "invalid YAML: " + msg})
}

// at records a problem at node n.
//
// A path gets at most one problem, and none once an enclosing path has one
// (a listener that is not a mapping is not also missing its fields).
func (d *decoder) at(n *yaml.Node, path, format string, args ...any) {
	for p := path; ; p = parentPath(p) {
		if d.bad[p] {
			return
		}
		if p == "" {
			break
		}
	}
	d.bad[path] = true
	line, col := 1, 1
	if n != nil && n.Line > 0 {
		line, col = n.Line, max(n.Column, 1)
	}
	d.errs = append(d.errs, &FieldError{File: d.file, Line: line, Col: col, Field: path, Msg: fmt.Sprintf(format, args...)})
}

// errf records a problem with the value at path, positioned at the node the
// value was written at or, when it was left out, at the nearest enclosing
// node that was written (the parent mapping for a missing field).
func (d *decoder) errf(path, format string, args ...any) {
	d.at(d.node(path), path, format, args...)
}

func (d *decoder) node(path string) *yaml.Node {
	for p := path; ; p = parentPath(p) {
		if info, ok := d.nodes[p]; ok {
			return info.node
		}
		if p == "" {
			return nil
		}
	}
}

func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// pathInfo is what the decoder learned about one field path.
type pathInfo struct {
	node *yaml.Node // where the value was written (the alias, if one)
	set  bool       // present and not null
}

// isSet reports whether the value at path was present and not null.
func (d *decoder) isSet(path string) bool { return d.nodes[path].set }

var (
	durationType = reflect.TypeFor[time.Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
)

// isKind reports whether node n is of kind; when not, it records at use
// that path expected what.
func (d *decoder) isKind(n, use *yaml.Node, path string, kind yaml.Kind, what string) bool {
	if n.Kind == kind {
		return true
	}
	d.at(use, path, "expected %s, got %s", what, describe(n))
	return false
}

// value decodes node n into v, whose field path is path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if d.exhausted {
		return
	}
	if d.visits++; d.visits > maxVisits {
		d.exhausted = true
		return
	}
	use := n // where the value is used, for positions
	if n.Kind == yaml.AliasNode {
		target := d.aliasTarget(n, path)
		if target == nil {
			return
		}
		d.active[target] = true
		defer delete(d.active, target)
		n = target
	}
	// null is the same as leaving the key out (but keeps its position).
	null := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	d.nodes[path] = pathInfo{node: use, set: !null}
	if null {
		return
	}

	switch {
	case v.Type() == durationType:
		d.duration(n, use, v, path)
	case v.Type() == byteSizeType:
		d.byteSize(n, use, v, path)
	case v.Kind() == reflect.Struct:
		if d.isKind(n, use, path, yaml.MappingNode, "a mapping") {
			d.mapping(n, v, path)
		}
	case v.Kind() == reflect.Pointer:
		if d.isKind(n, use, path, yaml.MappingNode, "a mapping") {
			p := reflect.New(v.Type().Elem())
			d.mapping(n, p.Elem(), path)
			v.Set(p)
		}
	case v.Kind() == reflect.Slice:
		if d.isKind(n, use, path, yaml.SequenceNode, "a list") {
			d.list(n, v, path)
		}
	case v.Kind() == reflect.String:
		if !d.isKind(n, use, path, yaml.ScalarNode, "a string") {
			return
		}
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float", "!!timestamp":
			v.SetString(n.Value)
		default:
			d.at(use, path, "expected a string, got %s (quote it if you mean the text)", describe(n))
		}
	case v.Kind() == reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.at(use, path, "expected true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int:
		var i int
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.at(use, path, "expected an integer, got %s", describe(n))
			return
		}
		v.SetInt(int64(i))
	default:
		panic(fmt.Sprintf("BUG: config: no decoder for %s at %s", v.Type(), path))
	}
}

// aliasTarget returns the node an alias stands for, or nil (reported)
// when it is unknown or refers to itself.
func (d *decoder) aliasTarget(n *yaml.Node, path string) *yaml.Node {
	target := n.Alias
	if target == nil {
		d.at(n, path, "unknown alias")
		return nil
	}
	if d.active[target] {
		d.at(n, path, "alias *%s refers to itself", n.Value)
		return nil
	}
	return target
}

// list decodes a sequence into the slice v. An empty list leaves the slice
// nil: it is the same as none.
func (d *decoder) list(n *yaml.Node, v reflect.Value, path string) {
	if len(n.Content) == 0 {
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) duration(n, use *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!bool" {
		d.at(use, path, "expected a duration such as 10m or 30s, got %s", describe(n))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	if err != nil {
		d.at(use, path, "invalid duration %q: use Go syntax with a unit, such as 10m, 30s or 1h30m", clip(n.Value))
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) byteSize(n, use *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		d.at(use, path, "expected a size such as 16MiB or 1048576, got %s", describe(n))
		return
	}
	size, err := ParseByteSize(n.Value)
	if err != nil {
		d.at(use, path, "%v", err)
		return
	}
	v.SetInt(int64(size))
}

// pair is one key: value of a mapping, after merge keys are expanded.
type pair struct{ key, val *yaml.Node }

// mapping decodes mapping node n into struct v, rejecting unknown and
// duplicate keys.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	fields := d.fields[v.Type()]
	if fields == nil {
		fields = structFields(v.Type())
		d.fields[v.Type()] = fields
	}
	seen := map[string]*yaml.Node{}
	for _, p := range d.pairs(n, path) {
		k := p.key
		if k.Kind != yaml.ScalarNode {
			d.at(k, path, "mapping keys must be strings, got %s", describe(k))
			continue
		}
		name := k.Value
		fpath := joinPath(path, safeKey(name))
		if first, dup := seen[name]; dup {
			if first != nil {
				d.at(k, fpath, "duplicate key %q (first set at line %d)", clip(name), first.Line)
			}
			continue
		}
		seen[name] = k
		idx, ok := fields[name]
		if !ok {
			d.at(k, fpath, "unknown key %q%s", clip(name), suggest(name, fieldNames(v.Type())))
			continue
		}
		d.value(p.val, v.Field(idx), fpath)
	}
}

// pairs lists the key/value pairs of mapping n. Keys from a "<<" merge come
// after the mapping's own keys and only when the mapping does not set them.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var own, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(val, path)...)
			continue
		}
		own = append(own, pair{k, val})
	}
	if len(merged) == 0 {
		return own
	}
	has := map[string]bool{}
	for _, p := range own {
		has[p.key.Value] = true
	}
	for _, p := range merged {
		if !has[p.key.Value] {
			has[p.key.Value] = true
			own = append(own, p)
		}
	}
	return own
}

// mergeSources expands the value of a "<<" key: a mapping, an alias of one,
// or a list of those.
func (d *decoder) mergeSources(val *yaml.Node, path string) []pair {
	if d.visits++; d.visits > maxVisits {
		d.exhausted = true
		return nil
	}
	target := val
	if val.Kind == yaml.AliasNode {
		target = val.Alias
		if target == nil || d.active[target] {
			d.at(val, path, "merge alias refers to itself")
			return nil
		}
		d.active[target] = true
		defer delete(d.active, target)
	}
	switch target.Kind {
	case yaml.MappingNode:
		return d.pairs(target, path)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range target.Content {
			if item.Kind == yaml.SequenceNode {
				d.at(item, path, "merge list items must be mappings")
				continue
			}
			out = append(out, d.mergeSources(item, path)...)
		}
		return out
	default:
		d.at(val, path, "merge key << needs a mapping, got %s", describe(target))
		return nil
	}
}

// structFields maps yaml key names to field indexes.
func structFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			m[name] = i
		}
	}
	return m
}

func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if name := yamlName(t.Field(i)); name != "" {
			names = append(names, name)
		}
	}
	return names
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}
