-- What inference writes: one row per asset and feature-vector time.
-- top_features holds the explanation, e.g. [["env_bpfo", 0.41], ["rms", 0.22]].

CREATE TABLE prediction (
    asset_id text NOT NULL,
    time timestamptz NOT NULL,
    received_at timestamptz NOT NULL,             -- receipt of the window it comes from
    created_at timestamptz NOT NULL DEFAULT now(),
    rul_hours real NOT NULL,
    rul_low real NOT NULL,
    rul_high real NOT NULL,
    health_index real NOT NULL,
    anomaly_score real NOT NULL,
    running boolean NOT NULL,
    model_version text NOT NULL,
    top_features jsonb NOT NULL DEFAULT '[]',
    PRIMARY KEY (asset_id, time)
);
SELECT cbm_time_table('prediction', INTERVAL '7 days');
