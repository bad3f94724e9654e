-- Shadow mode: a candidate model runs beside the live one before promotion.
--
-- The inference stage writes the candidate's predictions here, never to
-- `prediction`: the alerter, the dashboards' RUL panels and the published
-- per-asset topic see only the live model, so a shadow cannot page anyone.
-- `cbm shadow status` compares the two tables row by row (same asset and
-- time); `cbm shadow promote` makes the candidate live.
--
-- Same columns as `prediction` minus the explanation (not computed for a
-- shadow: it would double the cost of the shadow again). model_version is part
-- of the key so two candidates run one after the other keep their rows apart
-- and a replayed batch is a no-op.

CREATE TABLE shadow_prediction (
    asset_id text NOT NULL,
    time timestamptz NOT NULL,
    model_version text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    rul_hours real NOT NULL,
    rul_low real NOT NULL,
    rul_high real NOT NULL,
    anomaly_score real NOT NULL,
    running boolean NOT NULL,
    PRIMARY KEY (asset_id, time, model_version)
);
SELECT cbm_time_table('shadow_prediction', INTERVAL '7 days');
CREATE INDEX shadow_prediction_version_time ON shadow_prediction (model_version, time);

-- A retrain may now put its candidate in shadow instead of promoting it at once.
ALTER TABLE model_promotion DROP CONSTRAINT model_promotion_decision_check;
ALTER TABLE model_promotion ADD CONSTRAINT model_promotion_decision_check
    CHECK (decision IN ('promoted', 'rejected', 'shadowed'));
