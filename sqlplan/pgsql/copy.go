package pgsql

import (
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/sqlplan"
)

// copyStmt plans COPY.
func (a *analyzer) copyStmt(s *pg.CopyStmt, st *Statement) error {
	serverSide := s.Filename != "" || s.IsProgram
	cp := &Copy{}
	if s.Query != nil {
		return a.copyQueryStmt(s, st, cp, serverSide)
	}
	target, err := a.baseRel(s.Relation)
	if err != nil {
		return err
	}
	if target.rule == nil {
		return nil
	}
	if serverSide {
		if s.IsFrom {
			return unsupported(target.rule.Columns[0], "server-side COPY FROM a file or program into a table with encrypted columns would store plaintext; use COPY … FROM STDIN")
		}
		return unsupported(target.rule.Columns[0], "server-side COPY TO a file or program would write ciphertext; use COPY … TO STDOUT")
	}
	names, ok := stringList(s.Attlist)
	if !ok {
		return unsupported(nil, "a COPY column list of unknown shape")
	}
	if len(names) == 0 {
		if err := a.fetchColumns(target); err != nil {
			return err
		}
		if !target.known || len(target.cols) == 0 {
			return unsupported(target.rule.Columns[0], "COPY needs the table's column list, which is not known")
		}
		for _, c := range target.cols {
			names = append(names, c.name)
		}
		if err := a.pinColumns(s.Relation, false, names); err != nil {
			return err
		}
	}
	for _, n := range names {
		if c := target.rule.SimilarColumn(n); c != nil {
			return refuse(c, sqlplan.StateInvalidName, "column %q matches encrypted column %s only when case is ignored", n, c)
		}
		cp.Fields = append(cp.Fields, CopyField{Name: n, Column: target.rule.Column(n)})
	}
	if err := copyOptions(s.Options, cp); err != nil {
		return err
	}
	if s.WhereClause != nil {
		sc := &scope{rels: []*rel{target}}
		if _, err := a.plain(s.WhereClause, sc, "a COPY … WHERE condition"); err != nil {
			return err
		}
	}
	st.Copy = cp
	if s.IsFrom {
		st.Kind = KindCopyFrom
		// Its NULLs (and DEFAULT markers) are written with no key.
		for _, f := range cp.Fields {
			if f.Column != nil {
				a.keyless = append(a.keyless, sqlplan.KeylessWrite{Column: f.Column})
			}
		}
	} else {
		st.Kind = KindCopyTo
	}
	return nil
}

// copyQueryStmt plans COPY (query) TO into cp.
func (a *analyzer) copyQueryStmt(s *pg.CopyStmt, st *Statement, cp *Copy, serverSide bool) error {
	out, err := a.copyQuery(s.Query)
	if err != nil {
		return err
	}
	enc := false
	for _, c := range out.cols {
		cp.Fields = append(cp.Fields, CopyField{Name: c.name, Column: ruleOf(c.prov)})
		enc = enc || c.prov != nil
	}
	if !enc {
		return nil
	}
	if !out.known {
		return unsupported(nil, "COPY (query) with * over a relation whose columns are unknown; list the columns")
	}
	if serverSide {
		return unsupported(cp.Fields[0].Column, "server-side COPY TO a file or program would write ciphertext; use COPY … TO STDOUT")
	}
	if err := copyOptions(s.Options, cp); err != nil {
		return err
	}
	st.Kind, st.Copy = KindCopyTo, cp
	return nil
}

func ruleOf(p *prov) *rules.ColumnRule {
	if p == nil {
		return nil
	}
	return p.rule
}

// copyQuery analyzes the query of COPY (query) TO.
func (a *analyzer) copyQuery(q *pg.Node) (selOut, error) {
	switch v := q.GetNode().(type) {
	case *pg.Node_SelectStmt:
		return a.selectStmt(v.SelectStmt, nil, outDerived)
	case *pg.Node_InsertStmt:
		return a.insert(v.InsertStmt, nil, outDerived)
	case *pg.Node_UpdateStmt:
		return a.update(v.UpdateStmt, nil, outDerived)
	case *pg.Node_DeleteStmt:
		return a.delete(v.DeleteStmt, nil, outDerived)
	}
	return selOut{}, unsupported(nil, "COPY of a %s", stmtName(q))
}

// copyOptions reads COPY options into cp, with PostgreSQL's defaults.
func copyOptions(opts []*pg.Node, cp *Copy) error {
	cp.Format = CopyText
	var o copyOpts
	for _, opt := range opts {
		d := opt.GetDefElem()
		if d == nil {
			continue
		}
		switch d.Defname {
		case "format":
			f, err := copyFormat(d)
			if err != nil {
				return err
			}
			cp.Format = f
		case "delimiter", "null", "quote", "escape":
			s := defString(d)
			*o.text(d.Defname) = &s
		case "default":
			cp.Default = defString(d)
		case "header":
			b, err := copyHeader(d)
			if err != nil {
				return err
			}
			cp.Header = b
		case "encoding":
			e := strings.ToLower(strings.ReplaceAll(defString(d), "-", ""))
			if e != "utf8" && e != "unicode" {
				return unsupported(nil, "COPY of encrypted columns in an encoding other than UTF8")
			}
		case "force_quote":
			o.forceQuote, o.forceQuoteAll = defList(d)
		case "force_not_null":
			o.forceNotNull, o.forceNotNullAll = defList(d)
		case "force_null":
			o.forceNull, o.forceNullAll = defList(d)
		case "freeze", "on_error", "log_verbosity":
			// No effect on the values.
		default:
			return unsupported(nil, "COPY option %q with encrypted columns", d.Defname)
		}
	}
	o.apply(cp)
	return nil
}

// copyOpts holds the COPY options that copyOptions applies after reading
// them all (their defaults depend on the format).
type copyOpts struct {
	delim, null, quote, escape                   *string
	forceQuote, forceNotNull, forceNull          []string
	forceQuoteAll, forceNotNullAll, forceNullAll bool
}

// text returns the field of the string option name (delimiter, null,
// quote or escape).
func (o *copyOpts) text(name string) **string {
	switch name {
	case "delimiter":
		return &o.delim
	case "null":
		return &o.null
	case "quote":
		return &o.quote
	}
	return &o.escape
}

// apply sets cp's delimiter, NULL string, quote and escape from the
// format's defaults and the options given, and the FORCE_* flags of its
// fields.
func (o *copyOpts) apply(cp *Copy) {
	switch cp.Format {
	case CopyText:
		cp.Delimiter, cp.Null = "\t", `\N`
	case CopyCSV:
		cp.Delimiter, cp.Null, cp.Quote = ",", "", `"`
	}
	if o.delim != nil {
		cp.Delimiter = *o.delim
	}
	if o.null != nil {
		cp.Null = *o.null
	}
	if o.quote != nil {
		cp.Quote = *o.quote
	}
	cp.Escape = cp.Quote
	if o.escape != nil {
		cp.Escape = *o.escape
	}
	for i := range cp.Fields {
		f := &cp.Fields[i]
		f.ForceQuote = o.forceQuoteAll || contains(o.forceQuote, f.Name)
		f.ForceNotNull = o.forceNotNullAll || contains(o.forceNotNull, f.Name)
		f.ForceNull = o.forceNullAll || contains(o.forceNull, f.Name)
	}
}

// copyFormat reads the FORMAT option.
func copyFormat(d *pg.DefElem) (CopyFormat, error) {
	switch strings.ToLower(defString(d)) {
	case "text":
		return CopyText, nil
	case "csv":
		return CopyCSV, nil
	case "binary":
		return CopyBinary, nil
	}
	return 0, unsupported(nil, "COPY format of unknown kind")
}

// copyHeader reads the HEADER option (true, false or MATCH).
func copyHeader(d *pg.DefElem) (bool, error) {
	b, ok := defBool(d)
	if !ok {
		if strings.EqualFold(defString(d), "match") {
			b = true
		} else {
			return false, unsupported(nil, "a COPY HEADER option of unknown kind")
		}
	}
	return b, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func defString(d *pg.DefElem) string {
	switch v := d.Arg.GetNode().(type) {
	case *pg.Node_String_:
		return v.String_.Sval
	case *pg.Node_Integer:
		return strconv.Itoa(int(v.Integer.Ival))
	case *pg.Node_Boolean:
		if v.Boolean.Boolval {
			return "true"
		}
		return "false"
	case *pg.Node_TypeName:
		return typeNameString(v.TypeName)
	}
	return ""
}

func defBool(d *pg.DefElem) (bool, bool) {
	if d.Arg == nil {
		return true, true
	}
	switch v := d.Arg.GetNode().(type) {
	case *pg.Node_Boolean:
		return v.Boolean.Boolval, true
	case *pg.Node_Integer:
		if v.Integer.Ival == 0 || v.Integer.Ival == 1 {
			return v.Integer.Ival == 1, true
		}
	case *pg.Node_String_:
		switch strings.ToLower(v.String_.Sval) {
		case "true", "on", "t", "yes", "1":
			return true, true
		case "false", "off", "f", "no", "0":
			return false, true
		}
	}
	return false, false
}

// defList reads a column-list option (or * for all columns).
func defList(d *pg.DefElem) ([]string, bool) {
	switch v := d.Arg.GetNode().(type) {
	case *pg.Node_AStar:
		return nil, true
	case *pg.Node_List:
		names, _ := stringList(v.List.Items)
		return names, false
	}
	return nil, false
}
