"""Version 1: the versioned settings document, the shared state, the nodes, notifications.

The shared-state tables have the columns of the SQLite state database (migrations v1 to v5
of :mod:`postwarden.state.migrations`), so the shared queries run on both. Times are Unix
times in seconds, as there.
"""

VERSION = 1

STATEMENTS = (
    # Every version of the settings document: the text exactly as the nodes load it (its
    # SHA-256 is the version's digest). An edit inserts version N+1; two edits of version N
    # collide on the key, and the later one is applied again to N+1 (optimistic concurrency).
    """CREATE TABLE settings_versions (
        version  bigint PRIMARY KEY CHECK (version > 0),
        text     text NOT NULL,
        digest   text NOT NULL,
        created  double precision NOT NULL
    )""",
    """CREATE TABLE audit (
        id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time     double precision NOT NULL,
        "user"   text NOT NULL,
        source   text NOT NULL,
        command  text NOT NULL,
        before   text NOT NULL,
        after    text NOT NULL,
        diff     text NOT NULL,
        domain   text,
        version  bigint REFERENCES settings_versions (version) ON DELETE SET NULL
    )""",
    "CREATE INDEX audit_after ON audit (after)",
    """CREATE TABLE block_history (
        domain     text NOT NULL,
        entry      text NOT NULL,
        client_ip  text NOT NULL,
        first_seen double precision NOT NULL,
        last_seen  double precision NOT NULL,
        count      bigint NOT NULL,
        PRIMARY KEY (domain, entry, client_ip)
    )""",
    "CREATE INDEX block_history_recent ON block_history (last_seen)",
    """CREATE TABLE block_attempts (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time       double precision NOT NULL,
        domain     text NOT NULL,
        entry      text NOT NULL,
        client_ip  text NOT NULL,
        sender     text NOT NULL,
        recipient  text NOT NULL,
        source     text NOT NULL
    )""",
    "CREATE INDEX block_attempts_time ON block_attempts (time)",
    """CREATE TABLE decisions (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time       double precision NOT NULL,
        client_ip  text NOT NULL,
        sender     text NOT NULL,
        recipient  text NOT NULL,
        tls        integer NOT NULL,
        sasl_user  text NOT NULL,
        action     text NOT NULL,
        rule       text NOT NULL,
        domain     text NOT NULL,
        entry      text NOT NULL,
        digest     text NOT NULL
    )""",
    "CREATE INDEX decisions_time ON decisions (time)",
    # Since when each IP list entry is in the settings: kept by every edit, in its
    # transaction (the nodes apply it within seconds).
    """CREATE TABLE listed_entries (
        domain     text NOT NULL,
        list       text NOT NULL,
        entry      text NOT NULL,
        since      double precision NOT NULL,
        PRIMARY KEY (domain, list, entry)
    )""",
    "CREATE TABLE state_meta (name text PRIMARY KEY, value text NOT NULL)",
    "INSERT INTO state_meta VALUES ('recording_since', extract(epoch FROM now())::text)",
    """CREATE TABLE dkim_keys (
        domain      text NOT NULL,
        selector    text NOT NULL,
        algorithm   text NOT NULL,
        bits        integer,
        created     double precision NOT NULL,
        status      text NOT NULL,
        verified    double precision,
        last_check  double precision,
        last_result text,
        next_check  double precision,
        failures    integer NOT NULL DEFAULT 0,
        failing     double precision,
        PRIMARY KEY (domain, selector)
    )""",
    # The private keys: PKCS#8 PEM, or encrypted with the key file (Fernet) when 'sealed'.
    # Only postwarden's role reads this table; it is never part of an export.
    """CREATE TABLE dkim_private_keys (
        domain   text NOT NULL,
        selector text NOT NULL,
        sealed   boolean NOT NULL,
        material bytea NOT NULL,
        PRIMARY KEY (domain, selector)
    )""",
    "REVOKE ALL ON dkim_private_keys FROM PUBLIC",
    """CREATE TABLE web_users (
        name         text PRIMARY KEY,
        hash         text NOT NULL,
        role         text NOT NULL,
        domain       text,
        created      double precision NOT NULL,
        failures     integer NOT NULL DEFAULT 0,
        locked_until double precision NOT NULL DEFAULT 0,
        last_login   double precision
    )""",
    """CREATE TABLE web_sessions (
        id_hash   text PRIMARY KEY,
        "user"    text NOT NULL REFERENCES web_users (name) ON DELETE CASCADE,
        csrf      text NOT NULL,
        created   double precision NOT NULL,
        last_seen double precision NOT NULL
    )""",
    'CREATE INDEX web_sessions_user ON web_sessions ("user")',
    # The nodes: one row per local spool (its random id), with the last block-history
    # sequence number shipped from it, so a batch shipped twice is counted once.
    """CREATE TABLE nodes (
        node_id     text PRIMARY KEY,
        name        text NOT NULL,
        shipped_seq bigint NOT NULL DEFAULT 0,
        last_seen   double precision NOT NULL
    )""",
    """CREATE TABLE daemon_status (
        node_id   text NOT NULL REFERENCES nodes (node_id) ON DELETE CASCADE,
        name      text NOT NULL,
        pid       integer NOT NULL,
        started   double precision NOT NULL,
        loaded    double precision NOT NULL,
        digest    text NOT NULL,
        listening text NOT NULL,
        reported  double precision NOT NULL,
        PRIMARY KEY (node_id, name)
    )""",
    # Every change that the daemons must see is announced on one channel, at commit.
    """CREATE FUNCTION postwarden_announce() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('postwarden', TG_ARGV[0]);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER settings_announce AFTER INSERT ON settings_versions
        FOR EACH STATEMENT EXECUTE FUNCTION postwarden_announce('settings')""",
    """CREATE TRIGGER dkim_announce AFTER INSERT OR UPDATE OR DELETE ON dkim_keys
        FOR EACH STATEMENT EXECUTE FUNCTION postwarden_announce('dkim')""",
    """CREATE TRIGGER dkim_secret_announce AFTER INSERT OR UPDATE OR DELETE
        ON dkim_private_keys FOR EACH STATEMENT EXECUTE FUNCTION postwarden_announce('dkim')""",
)
