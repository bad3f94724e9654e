-- What the dashboards read, made cheap on plain PostgreSQL, and the engineer's
-- names for the features an explanation lists.
--
-- 1. Rollups kept current on plain PostgreSQL.
--
-- Without TimescaleDB, 0006 made prediction_hourly, feature_hourly and
-- ingest_window_minute views that aggregate the raw rows on every query: a
-- month of a hundred assets took 0.1-1.5 s per panel. Here each becomes a view
-- of the same name and columns over a table of *partial* aggregates (sums,
-- counts, minima, maxima), which statement-level AFTER INSERT triggers keep
-- current as rows arrive:
--
--   prediction_hourly_partial     per asset and hour
--   feature_hourly_partial        per asset and hour
--   ingest_window_minute_partial  per minute, whole fleet
--
-- Why these choices:
-- - Partials, not averages: sums and counts add up exactly, however late or
--   out of order rows come and however a bucket's rows are split between
--   batches; the view divides at read time (one row per bucket, cheap).
-- - Statement-level triggers with a transition table: one grouped upsert per
--   INSERT statement (the stages write a batch per statement), not one per row.
--   The transition table holds only the rows really inserted, so a duplicate
--   skipped by ON CONFLICT DO NOTHING is never counted (tests/grafana
--   test_it_rollups.py proves it).
-- - The upsert touches bucket rows in key order, so concurrent writers of
--   overlapping buckets wait for each other instead of deadlocking. The fleet
--   minute row is shared by every ingest batch of that minute: concurrent
--   ingest instances serialize on it for the rest of their transaction, which
--   is short (one statement plus the asset counters).
-- - UPDATE and DELETE (none in the pipeline; manual fixes, a retention job)
--   recompute the buckets they touch from the raw rows, since a minimum or
--   maximum cannot be taken back. TRUNCATE empties the partials.
-- - The trigger functions are SECURITY DEFINER: a writer needs no privilege on
--   the partial tables, and nobody but the owner can write them.
--
-- With TimescaleDB nothing changes: the continuous aggregates of 0006 stay
-- (hypertables do not support transition tables, and the aggregates already
-- read materialized buckets).
--
-- Each partial aggregate is written once, in the list below: the table is
-- created from it (CREATE TABLE AS ... WITH NO DATA gives the column types),
-- and every fold (trigger, recompute, backfill) runs it. How two partials of a
-- bucket merge follows from the column name: *_min takes the least, *_max the
-- greatest, anything else adds. Sums are never NULL (coalesce to 0), so adding
-- stays exact; averages divide by their own count (a NULL feature is not a 0).
--
-- An existing installation's history is folded in by the same statement, in
-- this migration's transaction, after the triggers exist: creating a trigger
-- locks the raw table against writers until commit, so no row is missed or
-- counted twice.

DO $$
DECLARE
    rollup record;
    bucket text;
    keys text;          -- grouping keys besides time: 'asset_id, ' or ''
    partial text;
    merge text;
    fold text;          -- folds the rows of relation %s into the partial table
    old_rows text;
    both_rows text;
    touched text;       -- the buckets of the rows of relation %s, as t(keys, time)
    same_bucket text;   -- partial row p is bucket t
    in_bucket text;     -- the raw rows now in the buckets %s
BEGIN
    IF cbm_has_timescaledb() THEN
        RETURN;
    END IF;
    FOR rollup IN
        SELECT * FROM (VALUES
            ('prediction_hourly', 'prediction', INTERVAL '1 hour', true,
             $list$
       count(*) AS predictions,
       coalesce(sum(rul_hours::float8), 0) AS rul_hours_sum,
       coalesce(sum(rul_low::float8), 0) AS rul_low_sum,
       coalesce(sum(rul_high::float8), 0) AS rul_high_sum,
       min(rul_hours) AS rul_min,
       coalesce(sum(health_index::float8), 0) AS health_index_sum,
       coalesce(sum(anomaly_score::float8), 0) AS anomaly_score_sum,
       max(anomaly_score) AS anomaly_max,
       coalesce(sum(date_part('epoch', created_at - time)), 0) AS lag_s_sum,
       max(date_part('epoch', created_at - time)) AS lag_s_max
$list$),
            ('feature_hourly', 'feature_vector', INTERVAL '1 hour', true,
             $list$
       count(*) AS vectors,
       count(*) FILTER (WHERE running) AS running_vectors,
       coalesce(sum(rms::float8) FILTER (WHERE running), 0) AS rms_sum,
       count(rms) FILTER (WHERE running) AS rms_n,
       max(rms) FILTER (WHERE running) AS rms_max,
       coalesce(sum(kurtosis::float8) FILTER (WHERE running), 0) AS kurtosis_sum,
       count(kurtosis) FILTER (WHERE running) AS kurtosis_n,
       coalesce(sum(crest_factor::float8) FILTER (WHERE running), 0) AS crest_factor_sum,
       count(crest_factor) FILTER (WHERE running) AS crest_factor_n,
       coalesce(sum(env_bpfo::float8) FILTER (WHERE running), 0) AS env_bpfo_sum,
       count(env_bpfo) FILTER (WHERE running) AS env_bpfo_n,
       coalesce(sum(env_bpfi::float8) FILTER (WHERE running), 0) AS env_bpfi_sum,
       count(env_bpfi) FILTER (WHERE running) AS env_bpfi_n,
       coalesce(sum(env_bsf::float8) FILTER (WHERE running), 0) AS env_bsf_sum,
       count(env_bsf) FILTER (WHERE running) AS env_bsf_n,
       coalesce(sum(temperature_mean_c::float8), 0) AS temperature_c_sum,
       count(temperature_mean_c) AS temperature_c_n,
       coalesce(sum(date_part('epoch', computed_at - time)), 0) AS lag_s_sum,
       max(date_part('epoch', computed_at - time)) AS lag_s_max
$list$),
            ('ingest_window_minute', 'ingest_window', INTERVAL '1 minute', false,
             $list$
       count(*) AS windows,
       count(*) FILTER (WHERE temperature_status = 'missing') AS without_temperature,
       coalesce(sum(date_part('epoch', received_at - time)), 0) AS lag_s_sum,
       max(date_part('epoch', received_at - time)) AS lag_s_max
$list$)
        ) AS r(name, raw, width, per_asset, list)
    LOOP
        partial := rollup.name || '_partial';
        bucket := format('date_bin(%L::interval, time, TIMESTAMPTZ %L)',
                         rollup.width, '2000-01-01 00:00:00+00');
        keys := CASE WHEN rollup.per_asset THEN 'asset_id, ' ELSE '' END;

        EXECUTE format('CREATE TABLE %I AS SELECT %s%s AS time, %s FROM %I GROUP BY %s%s WITH NO DATA',
                       partial, keys, bucket, rollup.list, rollup.raw, keys, bucket);
        EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (%stime)', partial, keys);
        IF rollup.per_asset THEN
            -- Fleet panels read every asset's buckets of a time range.
            EXECUTE format('CREATE INDEX %I ON %I (time)', partial || '_time', partial);
        END IF;

        SELECT string_agg(format(
                   CASE WHEN attname LIKE '%\_min' THEN '%1$I = least(p.%1$I, excluded.%1$I)'
                        WHEN attname LIKE '%\_max' THEN '%1$I = greatest(p.%1$I, excluded.%1$I)'
                        ELSE '%1$I = p.%1$I + excluded.%1$I' END, attname),
                   ', ' ORDER BY attnum)
        INTO merge
        FROM pg_attribute
        WHERE attrelid = partial::regclass AND attnum > 0 AND NOT attisdropped
          AND attname NOT IN ('asset_id', 'time');

        -- %s stays in: the relation the rows come from. ORDER BY = lock order.
        fold := format(
            'INSERT INTO %1$I AS p SELECT %2$s%3$s AS time, %4$s FROM %%s GROUP BY %2$s%3$s '
            'ORDER BY %2$s%3$s ON CONFLICT (%2$stime) DO UPDATE SET %5$s',
            partial, keys, bucket, rollup.list, merge);
        -- UPDATE and DELETE: the buckets the changed rows were (or now are) in,
        -- emptied, then folded again from the raw rows they hold now.
        old_rows := 'removed';
        both_rows := format('(SELECT %1$stime FROM removed UNION ALL '
                            'SELECT %1$stime FROM added) AS both_versions', keys);
        touched := format('(SELECT DISTINCT %s%s AS time FROM %%s) t', keys, bucket);
        same_bucket := CASE WHEN rollup.per_asset THEN 'p.asset_id = t.asset_id AND ' ELSE '' END
                       || 'p.time = t.time';
        in_bucket := format('(SELECT r.* FROM %I r JOIN %%s ON %sr.time >= t.time '
                            'AND r.time < t.time + %L::interval) AS changed',
                            rollup.raw,
                            CASE WHEN rollup.per_asset THEN 'r.asset_id = t.asset_id AND ' ELSE '' END,
                            rollup.width);

        EXECUTE format($fn$
CREATE FUNCTION %1$I() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = %2$I, pg_temp AS $body$
BEGIN
    IF TG_OP = 'INSERT' THEN
        %3$s;
    ELSIF TG_OP = 'DELETE' THEN
        DELETE FROM %4$I p USING %5$s WHERE %6$s;
        %7$s;
    ELSIF TG_OP = 'UPDATE' THEN
        DELETE FROM %4$I p USING %8$s WHERE %6$s;
        %9$s;
    ELSE
        TRUNCATE %4$I;
    END IF;
    RETURN NULL;
END
$body$
$fn$,
            'cbm_keep_' || rollup.name,
            current_schema(),
            format(fold, 'inserted'),
            partial,
            format(touched, old_rows),
            same_bucket,
            format(fold, format(in_bucket, format(touched, old_rows))),
            format(touched, both_rows),
            format(fold, format(in_bucket, format(touched, both_rows))));
        EXECUTE format('REVOKE ALL ON FUNCTION %I() FROM PUBLIC', 'cbm_keep_' || rollup.name);

        EXECUTE format('CREATE TRIGGER %1$I AFTER INSERT ON %2$I REFERENCING NEW TABLE AS inserted '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %3$I()',
                       rollup.name || '_insert', rollup.raw, 'cbm_keep_' || rollup.name);
        EXECUTE format('CREATE TRIGGER %1$I AFTER UPDATE ON %2$I '
                       'REFERENCING OLD TABLE AS removed NEW TABLE AS added '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %3$I()',
                       rollup.name || '_update', rollup.raw, 'cbm_keep_' || rollup.name);
        EXECUTE format('CREATE TRIGGER %1$I AFTER DELETE ON %2$I REFERENCING OLD TABLE AS removed '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %3$I()',
                       rollup.name || '_delete', rollup.raw, 'cbm_keep_' || rollup.name);
        EXECUTE format('CREATE TRIGGER %1$I AFTER TRUNCATE ON %2$I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %3$I()',
                       rollup.name || '_truncate', rollup.raw, 'cbm_keep_' || rollup.name);

        -- The history so far (nothing on a fresh installation).
        EXECUTE format(fold, quote_ident(rollup.raw));
        EXECUTE format('DROP VIEW %I', rollup.name);
        EXECUTE format('COMMENT ON TABLE %I IS %L', partial,
                       format('Partial aggregates behind the view %s, kept by triggers on %s.',
                              rollup.name, rollup.raw));
    END LOOP;

    -- The views keep 0006's names, columns and types, so every panel reads
    -- them unchanged; averages divide here, by their own count.
    CREATE VIEW prediction_hourly AS
    SELECT time,
           asset_id,
           predictions,
           rul_hours_sum / predictions AS rul_hours,
           rul_low_sum / predictions AS rul_low,
           rul_high_sum / predictions AS rul_high,
           rul_min,
           health_index_sum / predictions AS health_index,
           anomaly_score_sum / predictions AS anomaly_score,
           anomaly_max,
           lag_s_sum / predictions AS lag_avg_s,
           lag_s_max AS lag_max_s
    FROM prediction_hourly_partial;

    CREATE VIEW feature_hourly AS
    SELECT time,
           asset_id,
           vectors,
           running_vectors,
           rms_sum / nullif(rms_n, 0) AS rms,
           rms_max,
           kurtosis_sum / nullif(kurtosis_n, 0) AS kurtosis,
           crest_factor_sum / nullif(crest_factor_n, 0) AS crest_factor,
           env_bpfo_sum / nullif(env_bpfo_n, 0) AS env_bpfo,
           env_bpfi_sum / nullif(env_bpfi_n, 0) AS env_bpfi,
           env_bsf_sum / nullif(env_bsf_n, 0) AS env_bsf,
           temperature_c_sum / nullif(temperature_c_n, 0) AS temperature_c,
           lag_s_sum / vectors AS lag_avg_s,
           lag_s_max AS lag_max_s
    FROM feature_hourly_partial;

    CREATE VIEW ingest_window_minute AS
    SELECT time,
           windows,
           without_temperature,
           lag_s_sum / windows AS lag_avg_s,
           lag_s_max AS lag_max_s
    FROM ingest_window_minute_partial;

    COMMENT ON VIEW prediction_hourly IS
        'Predictions per asset and hour (mean RUL with its band, minimum RUL, health, anomaly, inference lag).';
    COMMENT ON VIEW feature_hourly IS
        'Key features per asset and hour, averaged over the windows taken while running.';
    COMMENT ON VIEW ingest_window_minute IS
        'Windows accepted per minute over the whole fleet, with the ingest lag.';
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'cbm_grafana') THEN
        GRANT SELECT ON prediction_hourly, feature_hourly, ingest_window_minute,
                        prediction_hourly_partial, feature_hourly_partial,
                        ingest_window_minute_partial TO cbm_grafana;
    END IF;
END
$$;

-- 2. The engineer's words for a feature, for the asset dashboard's explanations.
--
-- Each prediction's top_features names model inputs by column (env_bpfo); the
-- on-call engineer reads "envelope amplitude at BPFO" in Slack
-- (services/alerter/message.py: DRIVER_NAMES, and the fault hint of
-- FEATURE_PHRASES). Grafana cannot call Python, so the same words live here.
-- tests/grafana/test_it_explanations.py fails when the two differ; a change
-- of wording is then a new migration that rewrites these rows (the test prints
-- them). A name without a row is shown as it is, as Slack does.

CREATE TABLE feature_phrase (
    feature text PRIMARY KEY,                     -- feature_vector column, model input
    label text NOT NULL,                          -- what an engineer calls it
    hint text                                     -- the fault it points at, if any
);

INSERT INTO feature_phrase (feature, label, hint) VALUES
    ('band_1000_2000_power', 'vibration power 1-2 kHz', NULL),
    ('band_100_500_power', 'vibration power 100-500 Hz', NULL),
    ('band_2000_5000_power', 'vibration power 2-5 kHz', NULL),
    ('clearance_factor', 'clearance factor', NULL),
    ('crest_factor', 'crest factor', 'impacting?'),
    ('env_bpfi', 'envelope amplitude at BPFI', 'inner race?'),
    ('env_bpfo', 'envelope amplitude at BPFO', 'outer race?'),
    ('env_bsf', 'envelope amplitude at BSF', 'rolling element?'),
    ('env_ftf', 'envelope amplitude at FTF', 'cage?'),
    ('kurtosis', 'kurtosis', 'impacting: early bearing damage?'),
    ('peak', 'peak acceleration', NULL),
    ('rms', 'overall vibration (RMS)', 'wear, looseness or imbalance?'),
    ('skewness', 'skewness', NULL),
    ('spec_bpfi', 'spectrum amplitude at BPFI', 'inner race?'),
    ('spec_bpfo', 'spectrum amplitude at BPFO', 'outer race?'),
    ('spec_bsf', 'spectrum amplitude at BSF', 'rolling element?'),
    ('spec_ftf', 'spectrum amplitude at FTF', 'cage?'),
    ('spectral_centroid_hz', 'spectral centroid', NULL),
    ('temperature_mean_c', 'bearing temperature', NULL);

DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'cbm_grafana') THEN
        GRANT SELECT ON feature_phrase TO cbm_grafana;
    END IF;
END
$$;
