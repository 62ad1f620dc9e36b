//! The SQL of the PostgreSQL store: the table, the fence sequence and the four
//! functions that do each step atomically under the name's row lock.
//!
//! One row per name in use. `holders` and `waiters` are JSON arrays of small objects:
//! holder `{"o": owner, "f": fence, "m": mode, "e": expiry}` and waiter
//! `{"o": owner, "t": ticket, "m": mode, "p": passes, "e": expiry}`, where mode is
//! `x` (exclusive), `s` (shared) or `p` (a permit), expiries are milliseconds since
//! the epoch by the *server's* clock, and `passes` counts how often someone else was
//! granted the name while the waiter stood in line. A waiter passed over twice is *due*:
//! no request behind it is granted before it (the turn rule). `kind` is 0 for a
//! reader/writer name and `N` for a counted one with `N` permits.

/// The statements of one table.
pub(super) struct Sql {
    /// Run by `migrate`, in one batch (one transaction under an advisory lock).
    pub(super) migrate: String,
    pub(super) acquire: String,
    pub(super) refresh: String,
    pub(super) release: String,
    pub(super) leave: String,
    pub(super) holder: String,
    pub(super) leases: String,
    pub(super) leases_of: String,
    /// The channel `release` notifies, with the name as payload.
    pub(super) channel: String,
}

/// The table of earlier versions, whose fence sequence seeds ours on first migration.
const OLD_DEFAULT_TABLE: &str = "lock_core_leases";

impl Sql {
    pub(super) fn new(schema: &str, table: &str) -> Self {
        let t = format!("\"{schema}\".\"{table}\"");
        let seq = format!("\"{schema}\".\"{table}_fence_seq\"");
        let f = |what: &str| format!("\"{schema}\".\"{table}_{what}\"");
        let channel = format!("{table}_wake");
        let create_schema = if schema == "public" {
            String::new()
        } else {
            format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\";")
        };
        let seed = if table == super::DEFAULT_TABLE {
            format!(
                "DO $seed$ BEGIN \
                   IF to_regclass('\"{schema}\".\"{OLD_DEFAULT_TABLE}_fence_seq\"') IS NOT NULL THEN \
                     PERFORM setval('{seq}', greatest( \
                       (SELECT last_value FROM \"{schema}\".\"{OLD_DEFAULT_TABLE}_fence_seq\"), \
                       (SELECT last_value FROM {seq}))); \
                   END IF; \
                 END $seed$;"
            )
        } else {
            String::new()
        };
        let migrate = format!(
            r#"BEGIN;
SELECT pg_advisory_xact_lock(hashtext('lock-core migrate {schema}.{table}'));
{create_schema}
CREATE SEQUENCE IF NOT EXISTS {seq} AS bigint;
CREATE TABLE IF NOT EXISTS {t} (
    name        text PRIMARY KEY,
    kind        integer NOT NULL DEFAULT 0,
    holders     jsonb   NOT NULL DEFAULT '[]',
    waiters     jsonb   NOT NULL DEFAULT '[]',
    next_ticket bigint  NOT NULL DEFAULT 1
);
{seed}
DO $check$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                    WHERE table_schema = '{schema}' AND table_name = '{table}'
                      AND column_name = 'holders') THEN
        RAISE EXCEPTION 'table {schema}.{table} exists with another layout (an older lock-core lease table?): choose another table name';
    END IF;
END $check$;
CREATE OR REPLACE FUNCTION {acquire}(
    p_name text, p_owner text, p_ttl bigint, p_mode text, p_permits integer, p_queue boolean,
    OUT status text, OUT fence bigint, OUT holder text, OUT retry_ms bigint, OUT cur_kind integer)
LANGUAGE plpgsql AS $fn$
DECLARE
    r        {t}%ROWTYPE;
    now_ms   bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    want     integer := CASE WHEN p_mode = 'p' THEN p_permits ELSE 0 END;
    live     jsonb;
    queue    jsonb;
    mine     jsonb;
    others   integer;
    my_t     bigint;
    fits     boolean;
    due      text;
    pruned   boolean;
BEGIN
    LOOP
        INSERT INTO {t} (name) VALUES (p_name) ON CONFLICT (name) DO NOTHING;
        SELECT * INTO r FROM {t} WHERE name = p_name FOR UPDATE;
        EXIT WHEN FOUND;
    END LOOP;
    SELECT coalesce(jsonb_agg(x), '[]') INTO live
      FROM jsonb_array_elements(r.holders) x WHERE (x->>'e')::bigint > now_ms;
    SELECT coalesce(jsonb_agg(x ORDER BY (x->>'t')::bigint), '[]') INTO queue
      FROM jsonb_array_elements(r.waiters) x WHERE (x->>'e')::bigint > now_ms;
    pruned := jsonb_array_length(live) < jsonb_array_length(r.holders)
           OR jsonb_array_length(queue) < jsonb_array_length(r.waiters);

    -- A repeat of a request that was granted (its answer lost): the same lease again.
    SELECT x INTO mine FROM jsonb_array_elements(live) x WHERE x->>'o' = p_owner;
    IF mine IS NOT NULL THEN
        SELECT jsonb_agg(CASE WHEN x->>'o' = p_owner
                              THEN jsonb_set(x, '{{e}}', to_jsonb(now_ms + p_ttl)) ELSE x END)
          INTO live FROM jsonb_array_elements(live) x;
        UPDATE {t} SET holders = live, waiters = queue WHERE name = p_name;
        status := 'acquired'; fence := (mine->>'f')::bigint; cur_kind := r.kind;
        RETURN;
    END IF;

    SELECT (x->>'t')::bigint INTO my_t FROM jsonb_array_elements(queue) x WHERE x->>'o' = p_owner;
    SELECT count(*) INTO others FROM jsonb_array_elements(queue) x WHERE x->>'o' <> p_owner;
    IF jsonb_array_length(live) = 0 AND others = 0 THEN
        r.kind := want;
    ELSIF r.kind <> want THEN
        UPDATE {t} SET holders = live, waiters = queue WHERE name = p_name;
        status := 'mismatch'; cur_kind := r.kind;
        SELECT x->>'o' INTO holder FROM jsonb_array_elements(live) x LIMIT 1;
        RETURN;
    END IF;

    fits := CASE p_mode
        WHEN 'x' THEN jsonb_array_length(live) = 0
        WHEN 's' THEN NOT EXISTS (SELECT 1 FROM jsonb_array_elements(live) x WHERE x->>'m' = 'x')
        ELSE jsonb_array_length(live) < p_permits
    END;
    -- The turn rule: a due waiter ahead of us goes first (shared beside shared is fine).
    SELECT x->>'o' INTO due FROM jsonb_array_elements(queue) x
     WHERE x->>'o' <> p_owner AND (x->>'p')::integer >= 2
       AND (my_t IS NULL OR (x->>'t')::bigint < my_t)
       AND NOT (x->>'m' = 's' AND p_mode = 's')
     ORDER BY (x->>'t')::bigint LIMIT 1;

    IF fits AND due IS NULL THEN
        fence := nextval('{seq}');
        live := live || jsonb_build_array(jsonb_build_object(
            'o', p_owner, 'f', fence, 'm', p_mode, 'e', now_ms + p_ttl));
        SELECT coalesce(jsonb_agg(jsonb_set(x, '{{p}}', to_jsonb((x->>'p')::integer + 1))
                                  ORDER BY (x->>'t')::bigint), '[]')
          INTO queue FROM jsonb_array_elements(queue) x WHERE x->>'o' <> p_owner;
        UPDATE {t} SET kind = r.kind, holders = live, waiters = queue WHERE name = p_name;
        IF pruned AND jsonb_array_length(queue) > 0 THEN
            PERFORM pg_notify('{channel}', p_name);
        END IF;
        status := 'acquired'; cur_kind := r.kind;
        RETURN;
    END IF;

    IF p_queue THEN
        IF my_t IS NULL THEN
            queue := queue || jsonb_build_array(jsonb_build_object(
                'o', p_owner, 't', r.next_ticket, 'm', p_mode, 'p', 0, 'e', now_ms + p_ttl));
            r.next_ticket := r.next_ticket + 1;
        ELSE
            SELECT jsonb_agg(CASE WHEN x->>'o' = p_owner
                                  THEN jsonb_set(x, '{{e}}', to_jsonb(now_ms + p_ttl)) ELSE x END
                             ORDER BY (x->>'t')::bigint)
              INTO queue FROM jsonb_array_elements(queue) x;
        END IF;
    END IF;
    UPDATE {t} SET kind = r.kind, holders = live, waiters = queue, next_ticket = r.next_ticket
     WHERE name = p_name;
    IF pruned AND jsonb_array_length(queue) > 0 THEN
        PERFORM pg_notify('{channel}', p_name);
    END IF;
    status := 'held'; cur_kind := r.kind;
    IF fits THEN
        holder := due;
    ELSE
        SELECT x->>'o' INTO holder FROM jsonb_array_elements(live) x
         ORDER BY (x->>'m' = 'x') DESC, (x->>'f')::bigint LIMIT 1;
        SELECT min((x->>'e')::bigint) - now_ms INTO retry_ms FROM jsonb_array_elements(live) x;
    END IF;
END
$fn$;
CREATE OR REPLACE FUNCTION {refresh}(p_name text, p_owner text, p_fence bigint, p_ttl bigint)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    hs     jsonb;
BEGIN
    SELECT holders INTO hs FROM {t} WHERE name = p_name FOR UPDATE;
    IF NOT FOUND OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(hs) x
        WHERE x->>'o' = p_owner AND (x->>'f')::bigint = p_fence AND (x->>'e')::bigint > now_ms) THEN
        RETURN false;
    END IF;
    UPDATE {t} SET holders = (
        SELECT jsonb_agg(CASE WHEN x->>'o' = p_owner AND (x->>'f')::bigint = p_fence
                              THEN jsonb_set(x, '{{e}}', to_jsonb(now_ms + p_ttl)) ELSE x END)
          FROM jsonb_array_elements(hs) x)
     WHERE name = p_name;
    RETURN true;
END
$fn$;
CREATE OR REPLACE FUNCTION {release}(p_name text, p_owner text, p_fence bigint)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    r      {t}%ROWTYPE;
    live   jsonb;
    queue  jsonb;
    held   boolean;
BEGIN
    SELECT * INTO r FROM {t} WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    held := EXISTS (SELECT 1 FROM jsonb_array_elements(r.holders) x
        WHERE x->>'o' = p_owner AND (x->>'f')::bigint = p_fence AND (x->>'e')::bigint > now_ms);
    SELECT coalesce(jsonb_agg(x), '[]') INTO live FROM jsonb_array_elements(r.holders) x
     WHERE (x->>'e')::bigint > now_ms AND NOT (x->>'o' = p_owner AND (x->>'f')::bigint = p_fence);
    SELECT coalesce(jsonb_agg(x ORDER BY (x->>'t')::bigint), '[]') INTO queue
      FROM jsonb_array_elements(r.waiters) x WHERE (x->>'e')::bigint > now_ms;
    IF jsonb_array_length(live) = 0 AND jsonb_array_length(queue) = 0 THEN
        -- Idle: no row is kept per name (fences come from the sequence).
        DELETE FROM {t} WHERE name = p_name;
    ELSE
        UPDATE {t} SET holders = live, waiters = queue WHERE name = p_name;
    END IF;
    IF jsonb_array_length(queue) > 0 THEN
        PERFORM pg_notify('{channel}', p_name);
    END IF;
    RETURN held;
END
$fn$;
CREATE OR REPLACE FUNCTION {leave}(p_name text, p_owner text)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    now_ms bigint := (extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    r      {t}%ROWTYPE;
    live   jsonb;
    queue  jsonb;
BEGIN
    SELECT * INTO r FROM {t} WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT coalesce(jsonb_agg(x), '[]') INTO live FROM jsonb_array_elements(r.holders) x
     WHERE (x->>'e')::bigint > now_ms;
    SELECT coalesce(jsonb_agg(x ORDER BY (x->>'t')::bigint), '[]') INTO queue
      FROM jsonb_array_elements(r.waiters) x
     WHERE (x->>'e')::bigint > now_ms AND x->>'o' <> p_owner;
    IF jsonb_array_length(live) = 0 AND jsonb_array_length(queue) = 0 THEN
        DELETE FROM {t} WHERE name = p_name;
    ELSE
        UPDATE {t} SET holders = live, waiters = queue WHERE name = p_name;
    END IF;
    IF jsonb_array_length(queue) > 0 THEN
        -- A due waiter leaving may let the others in.
        PERFORM pg_notify('{channel}', p_name);
    END IF;
END
$fn$;
COMMIT;"#,
            acquire = f("acquire"),
            refresh = f("refresh"),
            release = f("release"),
            leave = f("leave"),
        );
        let live_rows = format!(
            "SELECT l.name, x->>'o', (x->>'f')::bigint, x->>'m', l.kind, \
                    (x->>'e')::bigint - (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
               FROM {t} l, jsonb_array_elements(l.holders) x \
              WHERE (x->>'e')::bigint > (extract(epoch FROM clock_timestamp()) * 1000)::bigint"
        );
        Sql {
            migrate,
            acquire: format!(
                "SELECT status, fence, holder, retry_ms, cur_kind FROM {}($1, $2, $3, $4, $5, $6)",
                f("acquire")
            ),
            refresh: format!("SELECT {}($1, $2, $3, $4)", f("refresh")),
            release: format!("SELECT {}($1, $2, $3)", f("release")),
            leave: format!("SELECT {}($1, $2)", f("leave")),
            holder: format!("{live_rows} AND l.name = $1 ORDER BY (x->>'m' = 'x') DESC, 3 LIMIT 1"),
            leases: format!("{live_rows} ORDER BY 1, 3"),
            leases_of: format!("{live_rows} AND l.name = $1 ORDER BY 3"),
            channel,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn statements_name_the_table_and_functions() {
        let s = super::Sql::new("app", "locks");
        assert!(s.migrate.contains("\"app\".\"locks_acquire\""));
        assert!(s.acquire.contains("\"app\".\"locks_acquire\"($1"));
        assert_eq!(s.channel, "locks_wake");
        assert!(
            !s.migrate.contains("lock_core_leases_fence_seq"),
            "seed only for the default"
        );
    }
}
