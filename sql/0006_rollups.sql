-- cbm:no-transaction
-- Rollups that let the dashboards show weeks and months without reading every row.
--
--   prediction_hourly     per asset and hour: RUL (mean, band, minimum), health,
--                         anomaly (mean, maximum), count, inference lag
--   feature_hourly        per asset and hour: the key features while running,
--                         temperature, count, feature lag
--   ingest_window_minute  per minute, whole fleet: windows accepted, windows
--                         without temperature, ingest lag
--
-- With TimescaleDB they are continuous aggregates with real-time aggregation
-- (materialized_only = false: buckets newer than the last refresh are computed
-- from the raw rows at query time) and a refresh policy. Without it they are
-- plain views of the same names and columns: correct, but they aggregate the
-- raw rows on every query, so long ranges cost what the raw tables cost.
--
-- One definition serves both: %1$s in the body is the bucket expression,
-- time_bucket() for TimescaleDB and date_bin() otherwise, and everything
-- Timescale-only runs through EXECUTE so plain PostgreSQL never parses it.
-- Only aggregates continuous aggregates accept are used (no percentiles, no
-- DISTINCT, no FILTER): percentiles come from the raw tables on short ranges.
-- Lags use date_part (double precision): extract() computes in numeric, which
-- costs several times more per row.
--
-- This file runs outside a transaction (first line): refresh_continuous_aggregate
-- cannot run inside one. Its statements are separated by lines holding only ";"
-- and each can run again (IF NOT EXISTS, OR REPLACE, if_not_exists) should the
-- migration stop half-way.

DO $$
DECLARE
    timescale constant boolean := cbm_has_timescaledb();
    rollup record;
    bucket text;
BEGIN
    FOR rollup IN
        SELECT * FROM (VALUES
            ('prediction_hourly', INTERVAL '1 hour', INTERVAL '1 hour', INTERVAL '15 minutes',
             'Predictions per asset and hour (mean RUL with its band, minimum RUL, health, anomaly, inference lag).',
             $body$
SELECT %1$s AS time,
       asset_id,
       count(*) AS predictions,
       avg(rul_hours) AS rul_hours,
       avg(rul_low) AS rul_low,
       avg(rul_high) AS rul_high,
       min(rul_hours) AS rul_min,
       avg(health_index) AS health_index,
       avg(anomaly_score) AS anomaly_score,
       max(anomaly_score) AS anomaly_max,
       avg(date_part('epoch', created_at - time)) AS lag_avg_s,
       max(date_part('epoch', created_at - time)) AS lag_max_s
FROM prediction
GROUP BY %1$s, asset_id
$body$),
            ('feature_hourly', INTERVAL '1 hour', INTERVAL '1 hour', INTERVAL '15 minutes',
             'Key features per asset and hour, averaged over the windows taken while running.',
             $body$
SELECT %1$s AS time,
       asset_id,
       count(*) AS vectors,
       sum(CASE WHEN running THEN 1 ELSE 0 END) AS running_vectors,
       avg(CASE WHEN running THEN rms END) AS rms,
       max(CASE WHEN running THEN rms END) AS rms_max,
       avg(CASE WHEN running THEN kurtosis END) AS kurtosis,
       avg(CASE WHEN running THEN crest_factor END) AS crest_factor,
       avg(CASE WHEN running THEN env_bpfo END) AS env_bpfo,
       avg(CASE WHEN running THEN env_bpfi END) AS env_bpfi,
       avg(CASE WHEN running THEN env_bsf END) AS env_bsf,
       avg(temperature_mean_c) AS temperature_c,
       avg(date_part('epoch', computed_at - time)) AS lag_avg_s,
       max(date_part('epoch', computed_at - time)) AS lag_max_s
FROM feature_vector
GROUP BY %1$s, asset_id
$body$),
            ('ingest_window_minute', INTERVAL '1 minute', INTERVAL '2 minutes', INTERVAL '1 minute',
             'Windows accepted per minute over the whole fleet, with the ingest lag.',
             $body$
SELECT %1$s AS time,
       count(*) AS windows,
       sum(CASE WHEN temperature_status = 'missing' THEN 1 ELSE 0 END) AS without_temperature,
       avg(date_part('epoch', received_at - time)) AS lag_avg_s,
       max(date_part('epoch', received_at - time)) AS lag_max_s
FROM ingest_window
GROUP BY %1$s
$body$)
        ) AS r(name, width, end_offset, schedule, comment, body)
    LOOP
        IF timescale THEN
            bucket := format('time_bucket(%L::interval, time)', rollup.width);
            EXECUTE format(
                'CREATE MATERIALIZED VIEW IF NOT EXISTS %I '
                'WITH (timescaledb.continuous, timescaledb.materialized_only = false) '
                'AS %s WITH NO DATA',
                rollup.name, format(rollup.body, bucket));
            -- start_offset NULL: the policy covers all history, so late data of
            -- any age is folded in; a refresh only recomputes invalidated buckets.
            EXECUTE format(
                'SELECT add_continuous_aggregate_policy(%L, start_offset => NULL, '
                'end_offset => %L::interval, schedule_interval => %L::interval, '
                'if_not_exists => true)',
                rollup.name, rollup.end_offset, rollup.schedule);
            -- A continuous aggregate is a view over a hidden hypertable; which
            -- COMMENT form TimescaleDB accepts has varied, and a comment is not
            -- worth failing the migration for.
            BEGIN
                EXECUTE format('COMMENT ON %s %I IS %L',
                               CASE (SELECT relkind FROM pg_class
                                     WHERE oid = rollup.name::regclass)
                                   WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END,
                               rollup.name, rollup.comment);
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'no comment on %: %', rollup.name, SQLERRM;
            END;
        ELSE
            bucket := format('date_bin(%L::interval, time, TIMESTAMPTZ %L)',
                             rollup.width, '2000-01-01 00:00:00+00');
            EXECUTE format('CREATE OR REPLACE VIEW %I AS %s',
                           rollup.name, format(rollup.body, bucket));
            EXECUTE format('COMMENT ON VIEW %I IS %L', rollup.name, rollup.comment);
        END IF;
        -- The default privileges of 0005 cover these too; granted explicitly
        -- so the rollups stay readable should a different role run this file.
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'cbm_grafana') THEN
            EXECUTE format('GRANT SELECT ON %I TO cbm_grafana', rollup.name);
        END IF;
    END LOOP;
END
$$
;
-- Materialize the history an existing installation already holds (a no-op on a
-- fresh one). A top-level DO may run procedures that commit; plain PostgreSQL
-- never runs (nor resolves) these calls.
DO $$
BEGIN
    IF cbm_has_timescaledb() THEN
        CALL refresh_continuous_aggregate('prediction_hourly', NULL, NULL);
        CALL refresh_continuous_aggregate('feature_hourly', NULL, NULL);
        CALL refresh_continuous_aggregate('ingest_window_minute', NULL, NULL);
    END IF;
END
$$
