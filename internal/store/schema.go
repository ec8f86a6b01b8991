package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
)

// migrations are the schema changes in order; PRAGMA user_version holds how
// many have been applied. Append to the list, never edit an entry that has
// shipped: later issues add dead letters and collector checkpoints here.
var migrations = [][]string{
	// 1: records and sink cursors.
	{
		// seq is NULL while a record is pending (Begin without Finish) and
		// is assigned, in commit order, when it is released for delivery.
		// Its UNIQUE constraint is the index ReadAfter, Prune and
		// drop_oldest use. time is unix nanoseconds. state is the payload's
		// $.state (gateway records), else NULL. size is len(data) in bytes.
		`CREATE TABLE records (
			id      TEXT PRIMARY KEY,
			seq     INTEGER UNIQUE,
			kind    TEXT NOT NULL,
			version INTEGER NOT NULL,
			time    INTEGER NOT NULL,
			state   TEXT,
			size    INTEGER NOT NULL,
			data    TEXT NOT NULL
		)`,
		`CREATE INDEX records_kind_time ON records(kind, time)`,
		`CREATE TABLE cursors (
			sink    TEXT PRIMARY KEY,
			seq     INTEGER NOT NULL,
			updated INTEGER NOT NULL
		)`,
	},
	// 2: activity-log collector checkpoints, one per scope. until is the
	// end (unix nanoseconds) of the last window whose events are all
	// committed; it moves in the same transaction as the window's last
	// records (checkpoint.go).
	{
		`CREATE TABLE checkpoints (
			scope   TEXT PRIMARY KEY,
			until   INTEGER NOT NULL,
			updated INTEGER NOT NULL
		)`,
	},
	// 3: delivery state. dead_letters holds a copy of every record a sink's
	// destination refused as invalid, with the reason (DESIGN.md §6); it
	// outlives the record's retention. cursors gain the sink's last error,
	// which `tapline query sinks` shows from another process.
	{
		`CREATE TABLE dead_letters (
			sink    TEXT NOT NULL,
			id      TEXT NOT NULL,
			seq     INTEGER NOT NULL,
			kind    TEXT NOT NULL,
			version INTEGER NOT NULL,
			time    INTEGER NOT NULL,
			data    TEXT NOT NULL,
			reason  TEXT NOT NULL,
			at      INTEGER NOT NULL,
			PRIMARY KEY (sink, id)
		)`,
		`ALTER TABLE cursors ADD COLUMN last_error TEXT`,
		`ALTER TABLE cursors ADD COLUMN last_error_at INTEGER`,
	},
	// 4: dashboard indexes (internal/dashboard). The dashboard filters
	// gateway calls by caller, deployment and status, newest first; these
	// expression indexes find a page of a rare caller or status without
	// reading every record. Their expressions are those of Filter.where
	// and limitedWhere (dashboard.go). usage_hourly keeps the usage of
	// gateway calls per hour, through triggers (rollup.go).
	append([]string{
		`CREATE INDEX records_principal_time ON records(kind, ` + principalSQL + `, time)`,
		`CREATE INDEX records_deployment_time ON records(kind, json_extract(data, '$.deployment'), time)`,
		`CREATE INDEX records_status_time ON records(kind, json_extract(data, '$.status'), time)`,
		// The calls refused by limits, a small part of all (dashboard.go).
		`CREATE INDEX records_throttled_time ON records(kind, state, time) WHERE ` + limitedWhere,
	}, rollupMigration()...),
	// 5: migration 4's expression indexes hold gateway calls only. As
	// full indexes they evaluated their JSON paths over every activity_log
	// event (4 KB each) and kept three useless entries for it, which
	// halved the collector's insert rate. A query uses them when its WHERE
	// says kind = 'gateway_request' as a literal (Filter.where).
	{
		`DROP INDEX records_principal_time`,
		`DROP INDEX records_deployment_time`,
		`DROP INDEX records_status_time`,
		`CREATE INDEX records_principal_time ON records(` + principalSQL + `, time) WHERE ` + gatewayKind,
		`CREATE INDEX records_deployment_time ON records(json_extract(data, '$.deployment'), time) WHERE ` + gatewayKind,
		`CREATE INDEX records_status_time ON records(json_extract(data, '$.status'), time) WHERE ` + gatewayKind,
	},
	// 6: strict audit's started records wait in a table of their own.
	// Begun in records, each call paid twice for records' indexes: once
	// on insert, and again when Finish rewrote the row with its response
	// (the UPDATE re-keyed every payload index). Now Begin inserts into
	// started, which holds only the calls in flight and has one index, and
	// Finish moves the completed record to records with one insert, as
	// standard audit writes it. started has records' columns (seq always
	// NULL) so that the two read as one (everyRecord).
	{
		`CREATE TABLE started (
			id      TEXT PRIMARY KEY,
			seq     INTEGER,
			kind    TEXT NOT NULL,
			version INTEGER NOT NULL,
			time    INTEGER NOT NULL,
			state   TEXT,
			size    INTEGER NOT NULL,
			data    TEXT NOT NULL
		) WITHOUT ROWID`,
		`INSERT INTO started SELECT id, seq, kind, version, time, state, size, data FROM records WHERE seq IS NULL`,
		`DELETE FROM records WHERE seq IS NULL`,
		`DROP INDEX records_pending`,
	},
	// 7: cursors count the sink's failed writes, each retried (SinkFailed),
	// so that the dashboard's Delivery view and `tapline query sinks` show
	// them from another process; the Prometheus counter lives and dies with
	// the serving process.
	{
		`ALTER TABLE cursors ADD COLUMN retries INTEGER NOT NULL DEFAULT 0`,
	},
	// 8: activity_log records are keyed by scope, time and id, so that a
	// collector's inserts land next to each other. The id primary key and
	// the (kind, time) index put every event of a backfill at a random
	// place in two B-trees (event ids are random, and each scope's events
	// span the whole window), and each commit wrote about a page of each
	// per event, twice with the checkpoint: half of a backfill's bytes
	// (BENCHMARKS.md). A scope's events in time order are a run in
	// (kind, scope, time, id).
	//
	// records is rebuilt because its id primary key cannot be dropped. Its
	// seq becomes the rowid (every released record has one since migration
	// 6), which saves the seq index: rows are stored in delivery order. The
	// new table has a scope column: "<scope kind>:<scope id>" for
	// activity_log records (scopeOf), NULL for the others. Other kinds keep
	// a unique id through records_id, whose WHERE the id lookups say
	// literally (notActivity); an activity_log record is unique by (scope,
	// time, id) through records_kind_scope_time, which also serves every
	// time-ordered query (gateway queries say scope IS NULL).
	//
	// A gateway_request record's principal (record.Principal.ID, as
	// principalSQL), deployment and status are columns too, filled by the
	// writer (gatewayMembers.columns): migration 5's indexes on their JSON paths
	// parsed each 2 KB payload three times an insert, a fifth of the
	// insert's cost. The indexes are otherwise those of migrations 4 and 5,
	// and the rollup's trigger that of migration 4.
	{
		`CREATE TABLE records_v8 (
			id      TEXT NOT NULL,
			seq     INTEGER PRIMARY KEY,
			kind    TEXT NOT NULL,
			version INTEGER NOT NULL,
			time    INTEGER NOT NULL,
			state   TEXT,
			size    INTEGER NOT NULL,
			data    TEXT NOT NULL,
			scope   TEXT,
			principal  TEXT,
			deployment TEXT,
			status     INTEGER
		)`,
		`INSERT INTO records_v8 (id, seq, kind, version, time, state, size, data, scope, principal, deployment, status)
			SELECT id, seq, kind, version, time, state, size, data,
				CASE WHEN ` + activityKind + ` THEN ` + scopeSQL + ` END,
				CASE WHEN ` + gatewayKind + ` THEN ` + principalSQL + ` END,
				CASE WHEN ` + gatewayKind + ` THEN json_extract(data, '$.deployment') END,
				CASE WHEN ` + gatewayKind + ` THEN json_extract(data, '$.status') END
			FROM records ORDER BY seq`,
		`DROP TABLE records`,
		`ALTER TABLE records_v8 RENAME TO records`,
		`CREATE UNIQUE INDEX records_id ON records(id) WHERE ` + notActivity,
		`CREATE UNIQUE INDEX records_kind_scope_time ON records(kind, scope, time, id)`,
		`CREATE INDEX records_principal_time ON records(principal, time) WHERE ` + gatewayKind,
		`CREATE INDEX records_deployment_time ON records(deployment, time) WHERE ` + gatewayKind,
		`CREATE INDEX records_status_time ON records(status, time) WHERE ` + gatewayKind,
		`CREATE INDEX records_throttled_time ON records(kind, state, time) WHERE ` + limitedWhere,
		rollupDeleteTrigger(),
		`ALTER TABLE started ADD COLUMN scope TEXT`,
		`ALTER TABLE started ADD COLUMN principal TEXT`,
		`ALTER TABLE started ADD COLUMN deployment TEXT`,
		`ALTER TABLE started ADD COLUMN status INTEGER`,
		`UPDATE started SET principal = ` + principalSQL + `, deployment = json_extract(data, '$.deployment'),
			status = json_extract(data, '$.status') WHERE ` + gatewayKind,
	},
}

// notActivity is the WHERE of records_id (migration 8): the kinds unique by
// id alone. A lookup by id must say it literally for SQLite to use the index.
const notActivity = `kind <> 'activity_log'`

// activityKind selects activity_log records, literally, so that SQLite
// knows which part of records_kind_scope_time a query reads.
const activityKind = `kind = 'activity_log'`

// scopeSQL is scopeOf in SQL, over an activity_log payload.
const scopeSQL = `coalesce(json_extract(data, '$.scope.kind'), '') || ':' || coalesce(json_extract(data, '$.scope.id'), '')`

// everyRecord reads the released records and the started ones as one table,
// for the queries that include calls in flight. SQLite pushes a WHERE on
// it down into both arms, so records' indexes still serve it.
const everyRecord = `(SELECT * FROM records UNION ALL SELECT * FROM started)`

// countsSQL counts every record (started ones included), the started
// ones, and their bytes.
const countsSQL = `SELECT (SELECT count(*) FROM records) + (SELECT count(*) FROM started),
	(SELECT count(*) FROM started),
	(SELECT coalesce(sum(size), 0) FROM records) + (SELECT coalesce(sum(size), 0) FROM started)`

// gatewayKind is the WHERE of the partial indexes on gateway calls. Queries
// must say it literally, not through a parameter, for SQLite to use them.
const gatewayKind = `kind = 'gateway_request'`

// migrate applies the migrations the database has not seen, each in its own
// transaction together with its user_version bump.
func migrate(ctx context.Context, db *sql.DB, log *slog.Logger) error {
	var version int
	if err := db.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this build knows (%d)", version, len(migrations))
	}
	if version > 0 && version < len(migrations) {
		// Migration 8 rewrites every record: minutes on a store of many GB.
		log.Info("migrating the store's schema; a large store takes a while",
			"from", version, "to", len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if err := applyMigration(ctx, db, v); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	return nil
}

// applyMigration runs migrations[v] and sets user_version to v+1.
func applyMigration(ctx context.Context, db *sql.DB, v int) (err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tx.Rollback())
		}
	}()
	for _, stmt := range migrations[v] {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	// PRAGMA takes no bound parameters; v is an int from this package.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v+1)); err != nil {
		return err
	}
	return tx.Commit()
}

// counts is the part of the writer's state that a failed request or batch
// rolls back together with the database.
type counts struct {
	records int64
	pending int64
	bytes   int64
	dropped int64
	// credit is the bytes of begin log entries this batch has moved into
	// the database (materialized or finished), which the log still counts
	// until the commit releases them: fit takes them off once.
	credit int64
}

// recoverPending releases every started record, marking it interrupted:
// those were begun by a process that died before finishing them (DESIGN.md
// §6), and so are the entries of the begin log (begun) whose id the
// database does not hold. It returns the counts afterwards, the last seq,
// and how many records it recovered.
func recoverPending(ctx context.Context, db *sql.DB, begun []row) (c counts, lastSeq int64, n int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return c, 0, 0, fmt.Errorf("recover pending records: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("recover pending records: %w", err), tx.Rollback())
		}
	}()
	if err = tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM records`).Scan(&lastSeq); err != nil {
		return c, 0, 0, err
	}
	for _, r := range begun {
		r = r.withColumns()
		// An id already started or released keeps its row (the insert below
		// skips released ids).
		if _, err = tx.ExecContext(ctx, stmtSQL[sStart], r.id, r.kind, r.version, r.time, r.state, r.size(), r.data,
			r.principal, r.deployment, r.status); err != nil {
			return c, 0, 0, err
		}
	}
	ids, err := pendingIDs(ctx, tx)
	if err != nil {
		return c, 0, 0, err
	}
	for _, id := range ids {
		// An id records already holds keeps its released record.
		const q = `INSERT INTO records (id, seq, kind, version, time, state, size, data, principal, deployment, status)
			SELECT id, ?, kind, version, time, 'interrupted',
				length(CAST(json_set(data, '$.state', 'interrupted') AS BLOB)),
				json_set(data, '$.state', 'interrupted'), principal, deployment, status
			FROM started WHERE id = ?
			ON CONFLICT (id) WHERE ` + notActivity + ` DO NOTHING`
		res, err := tx.ExecContext(ctx, q, lastSeq+1, id)
		if err != nil {
			return c, 0, 0, err
		}
		if k, err := res.RowsAffected(); err != nil {
			return c, 0, 0, err
		} else if k == 1 {
			lastSeq++
			n++
		}
	}
	if _, err = tx.ExecContext(ctx, `DELETE FROM started`); err != nil {
		return c, 0, 0, err
	}
	if err = tx.QueryRowContext(ctx, countsSQL).Scan(&c.records, &c.pending, &c.bytes); err != nil {
		return c, 0, 0, err
	}
	if err = tx.Commit(); err != nil {
		return c, 0, 0, err
	}
	return c, lastSeq, n, nil
}

// pendingIDs lists the started records oldest first, the order they get
// seqs in.
func pendingIDs(ctx context.Context, tx *sql.Tx) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM started ORDER BY time, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}
