// Package chdb opens the nhiwatch ClickHouse database and brings its schema up to date from
// the migrations in schemas/clickhouse. Every statement nhiwatch sends must work on
// ClickHouse 18.16 (Debian's package, used by the tests) and on current releases.
package chdb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/nhiwatch/nhiwatch/schemas"
)

// Config says where ClickHouse is.
type Config struct {
	// Addr is host:port of the native protocol, comma-separated for several servers.
	// Empty disables ClickHouse.
	Addr     string `yaml:"addr" env:"ADDR"`
	Database string `yaml:"database" env:"DATABASE"`
	Username string `yaml:"username" env:"USERNAME"`
	// Password, or PasswordFile to read it from (preferred: it keeps the secret out of the
	// configuration file and the environment).
	Password     string        `yaml:"password" env:"PASSWORD"`
	PasswordFile string        `yaml:"password_file" env:"PASSWORD_FILE"`
	TLS          bool          `yaml:"tls" env:"TLS"`
	DialTimeout  time.Duration `yaml:"dial_timeout" env:"DIAL_TIMEOUT"`
}

// DefaultConfig is a local server's default database.
func DefaultConfig() Config {
	return Config{Database: "nhiwatch", Username: "default", DialTimeout: 10 * time.Second}
}

// Enabled reports whether an address is configured.
func (c Config) Enabled() bool { return c.Addr != "" }

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if !identRE.MatchString(c.Database) {
		return fmt.Errorf("clickhouse.database %q must be a plain identifier", c.Database)
	}
	if c.Password != "" && c.PasswordFile != "" {
		return errors.New("clickhouse: set password or password_file, not both")
	}
	return nil
}

// Open connects to the configured database, creating it when missing, and applies the
// migrations that have not been applied yet.
func Open(ctx context.Context, c Config) (driver.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, errors.New("clickhouse: no address configured")
	}
	password := c.Password
	if c.PasswordFile != "" {
		b, err := readSecretFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("clickhouse password file: %w", err)
		}
		password = b
	}
	opts := func(db string) *clickhouse.Options {
		o := &clickhouse.Options{
			Addr:         strings.Split(c.Addr, ","),
			Auth:         clickhouse.Auth{Database: db, Username: c.Username, Password: password},
			DialTimeout:  c.DialTimeout,
			ReadTimeout:  time.Minute,
			MaxOpenConns: 16,
		}
		if c.TLS {
			o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return o
	}
	boot, err := clickhouse.Open(opts("default"))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	err = boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+c.Database)
	boot.Close()
	if err != nil {
		return nil, fmt.Errorf("clickhouse: create database %s: %w", c.Database, err)
	}
	conn, err := clickhouse.Open(opts(c.Database))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	if err := Migrate(ctx, conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// Migration is one numbered file of schemas/clickhouse.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(schemas.ClickHouse, "clickhouse")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNN_name.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", prev, name, v)
		}
		seen[v] = name
		data, err := fs.ReadFile(schemas.ClickHouse, "clickhouse/"+name)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, Statements: SplitStatements(string(data))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// SplitStatements splits a migration into statements at semicolons that end a line, after
// dropping "--" comment lines. Migrations must not put ";" at the end of a line inside a
// string literal.
func SplitStatements(sql string) []string {
	var b strings.Builder
	for _, line := range strings.Split(sql, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	var out []string
	for _, part := range regexp.MustCompile(`;\s*\n`).Split(b.String()+"\n", -1) {
		if s := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(part), ";")); s != "" {
			out = append(out, s)
		}
	}
	return out
}

const migrationsTable = `CREATE TABLE IF NOT EXISTS nhiwatch_migrations (
    version UInt32,
    name String,
    applied_at DateTime
) ENGINE = MergeTree ORDER BY version`

// Migrate applies every migration newer than the last one recorded. Statements use
// IF NOT EXISTS, so two services migrating at once, or a migration interrupted half-way,
// converge on the same schema.
func Migrate(ctx context.Context, conn driver.Conn) error {
	if err := conn.Exec(ctx, migrationsTable); err != nil {
		return fmt.Errorf("clickhouse migrations table: %w", err)
	}
	var applied uint32
	row := conn.QueryRow(ctx, "SELECT max(version) FROM nhiwatch_migrations")
	if err := row.Scan(&applied); err != nil {
		return fmt.Errorf("clickhouse migrations: read version: %w", err)
	}
	ms, err := Migrations()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Version <= int(applied) {
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil && !AlreadyApplied(err) {
				return fmt.Errorf("clickhouse migration %s statement %d: %w", m.Name, i+1, err)
			}
		}
		if err := recordMigration(ctx, conn, m); err != nil {
			return fmt.Errorf("clickhouse migration %s: record: %w", m.Name, err)
		}
	}
	return nil
}

// recordMigration notes m as applied. Inserts always go through a batch: ClickHouse 18.16
// does not answer an INSERT … VALUES sent with Exec over the native protocol.
func recordMigration(ctx context.Context, conn driver.Conn, m Migration) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO nhiwatch_migrations (version, name, applied_at)")
	if err != nil {
		return err
	}
	if err := b.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
		return err
	}
	return b.Send()
}

// ClickHouse error codes that can mean a statement's effect is already in place.
const (
	codeDuplicateColumn    = 15 // current releases
	codeIllegalColumn      = 44 // 18.16 reports a duplicate column with this code
	codeTableAlreadyExists = 57
)

// AlreadyApplied reports whether err says a migration statement's effect already exists:
// another process ran the same migration concurrently. ClickHouse 18.16 has no
// `ADD COLUMN IF NOT EXISTS`, so migrations that add columns rely on this.
func AlreadyApplied(err error) bool {
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	switch ex.Code {
	case codeDuplicateColumn, codeTableAlreadyExists:
		return true
	case codeIllegalColumn:
		return strings.Contains(ex.Message, "already exists")
	}
	return false
}
