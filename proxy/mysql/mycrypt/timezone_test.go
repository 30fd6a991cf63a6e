package mycrypt

import (
	"testing"
	"time"
	_ "time/tzdata" // named zones whatever the machine has installed

	"github.com/dbproxy/dbproxy/sqlplan/mysqlsql"
)

func TestZoneChange(t *testing.T) {
	plus2 := time.FixedZone("+02:00", 2*3600)
	cases := []struct {
		sql     string
		changed bool
		want    *time.Location // zoneUnknown, nil (UTC) or an offset
		offset  int
	}{
		{"SELECT 1", false, nil, 0},
		{"SELECT @@session.time_zone", false, nil, 0},
		{"show variables like 'time_zone'", false, nil, 0},
		{"SET time_zone = '+02:00'", true, plus2, 7200},
		{"set SESSION time_zone='-05:30';", true, plus2, -(5*3600 + 1800)},
		{"SET @@session.time_zone = \"+00:00\"", true, nil, 0},
		{"SET @@time_zone := 'UTC'", true, nil, 0},
		{"SET time_zone = 'SYSTEM'", true, zoneUnknown, 0},
		{"SET time_zone = @tz", true, zoneUnknown, 0},
		{"SET NAMES utf8mb4, time_zone = '+01:00'", true, plus2, 3600},
		{"SET time_zone = '+02:00'; INSERT INTO t VALUES (1)", true, plus2, 7200},
		{"SET time_zone = 'Nowhere/Atlantis'", true, zoneUnknown, 0},
		{"SET time_zone = '+15:00'", true, zoneUnknown, 0},
		// mysqldump's header and trailer.
		{"/*!40103 SET @OLD_TIME_ZONE=@@TIME_ZONE */", false, nil, 0},
		{"/*!40103 SET TIME_ZONE='+00:00' */", true, nil, 0},
		{"/*M!100100 SET TIME_ZONE='+02:00' */", true, plus2, 7200},
		{"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */", true, zoneUnknown, 0},
		{"SET @tz := @@session.time_zone", false, nil, 0},
		{"SET @tz = @@time_zone, time_zone = '+01:00'", true, plus2, 3600},
		{"CALL p()", true, zoneUnknown, 0},
		// Executable comments for a newer version are comments.
		{"/*!99999 SET TIME_ZONE='+02:00' */", false, nil, 0},
		{"/*M!999999 SET TIME_ZONE='+02:00' */", false, nil, 0},
	}
	lex := mysqlsql.Lex{Flavour: mysqlsql.FlavourMariaDB, Version: 101106}
	for _, c := range cases {
		loc, ok := zoneOf(c.sql, lex)
		if ok != c.changed {
			t.Errorf("%q: changed = %v, want %v", c.sql, ok, c.changed)
			continue
		}
		switch {
		case !ok:
		case c.want == zoneUnknown || c.want == nil:
			if loc != c.want {
				t.Errorf("%q: zone %v, want %v", c.sql, loc, c.want)
			}
		default:
			if loc == nil || loc == zoneUnknown {
				t.Errorf("%q: zone %v, want offset %d", c.sql, loc, c.offset)
				continue
			}
			if _, off := time.Date(2024, 1, 1, 0, 0, 0, 0, loc).Zone(); off != c.offset {
				t.Errorf("%q: offset %d, want %d", c.sql, off, c.offset)
			}
		}
	}
	if loc, ok := zoneOf("SET time_zone = 'Europe/Paris'", lex); !ok || loc == nil || loc == zoneUnknown || loc.String() != "Europe/Paris" {
		t.Errorf("named zone: %v %v", loc, ok)
	}
}

// zoneOf is what beginZoneChange makes of a string's change: ok false if
// it changes nothing.
func zoneOf(sql string, lex mysqlsql.Lex) (loc *time.Location, ok bool) {
	z := mysqlsql.AnalyzeTimeZone(sql, lex)
	switch z.Set {
	case mysqlsql.SettingUnchanged:
		return nil, false
	case mysqlsql.SettingValue:
		return parseZone(z.Zone), true
	}
	return zoneUnknown, true
}
