-- Core schema: the asset register and what ingest stores.
--
-- Portable by design: TimescaleDB where the extension is installed (compose,
-- Docker), plain PostgreSQL otherwise (this project's CI). Timescale-only calls
-- run through EXECUTE inside cbm_time_table() so plain PostgreSQL never parses
-- them. Every time-series table keys on (asset_id, time): redelivered or
-- replayed input hits ON CONFLICT DO NOTHING instead of adding a row.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
    END IF;
END
$$;

-- Turn a table into a hypertable on its time column, or, without the
-- extension, give it a BRIN index on time (cheap, fits append-mostly data).
CREATE OR REPLACE FUNCTION cbm_time_table(tbl regclass, chunk interval) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        EXECUTE format(
            'SELECT create_hypertable(%L, by_range(%L, %L::interval), if_not_exists => true)',
            tbl::text, 'time', chunk::text);
    ELSE
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING brin (time)',
                       replace(tbl::text, '.', '_') || '_time_brin', tbl);
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION cbm_has_timescaledb() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
$$;

CREATE TABLE asset (
    asset_id text PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    site text NOT NULL DEFAULT '',
    listed boolean NOT NULL DEFAULT false,        -- present in the settings' asset list
    first_seen timestamptz,                       -- event time of the earliest window
    last_seen timestamptz,                        -- event time of the latest window
    last_received_at timestamptz,                 -- receipt time of the latest input
    last_seq bigint,
    windows_accepted bigint NOT NULL DEFAULT 0,
    temperature_readings bigint NOT NULL DEFAULT 0,
    dead_letters bigint NOT NULL DEFAULT 0,
    gaps bigint NOT NULL DEFAULT 0,               -- windows missing by sequence number
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE temperature (
    asset_id text NOT NULL,
    time timestamptz NOT NULL,
    seq bigint NOT NULL,
    temperature_c real NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (asset_id, time)
);
SELECT cbm_time_table('temperature', INTERVAL '7 days');

-- One row per accepted window: the ledger that proves nothing was lost and
-- the source of per-stage rates and end-to-end lag on the pipeline board.
CREATE TABLE ingest_window (
    asset_id text NOT NULL,
    time timestamptz NOT NULL,
    seq bigint NOT NULL,
    received_at timestamptz NOT NULL,
    sample_rate_hz real NOT NULL,
    n_samples integer NOT NULL,
    temperature_c real,
    temperature_status text NOT NULL,
    PRIMARY KEY (asset_id, time)
);
SELECT cbm_time_table('ingest_window', INTERVAL '1 day');

-- Dead letters are kept at least once: a crash between commit and ack can
-- store the same rejected payload twice, which is harmless for counting.
CREATE TABLE dead_letter (
    id bigint GENERATED ALWAYS AS IDENTITY,
    time timestamptz NOT NULL,                    -- receipt time
    stage text NOT NULL,
    reason text NOT NULL,
    detail text NOT NULL,
    topic text NOT NULL,
    asset_id text,
    payload_size integer NOT NULL,
    payload_excerpt bytea NOT NULL,
    PRIMARY KEY (time, id)
);
SELECT cbm_time_table('dead_letter', INTERVAL '7 days');
CREATE INDEX dead_letter_reason ON dead_letter (reason, time DESC);
