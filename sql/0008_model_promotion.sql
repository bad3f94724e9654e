-- Every decision of `cbm retrain`: was the candidate model promoted over the
-- live one (models/CURRENT) or rejected, on which metric and by how much.
--
-- The decision itself is made and kept on disk (models/CURRENT, and
-- models/<version>/report.json); this table is its audit trail, so a retrain
-- without a database still decides and only this row is missing. Hence no
-- foreign keys: model versions live in files, not in the database.
--
-- A plain table, not a hypertable: one row per retraining run (weekly, say)
-- stays tiny, and an identity key keeps two decisions of the same second apart.
-- time is when the decision was made; report holds the full comparison (both
-- models' scores on the same held-out assets, the reason, the data) as written
-- to report.json. current_version and current_value are NULL when there was no
-- live model yet; a value is NULL when it was not a finite number.
-- The Grafana reader gets SELECT through the default privileges of 0005.

CREATE TABLE model_promotion (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time timestamptz NOT NULL,
    candidate_version text NOT NULL,
    current_version text,
    metric text NOT NULL CHECK (metric IN ('rmse', 'phm08', 'mae')),
    candidate_value double precision,
    current_value double precision,
    decision text NOT NULL CHECK (decision IN ('promoted', 'rejected')),
    decided_by text NOT NULL,                     -- `cbm retrain --by`, e.g. cron or a name
    report jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_promotion_time ON model_promotion (time);
