-- One row per window: every health indicator in its own column, so Grafana
-- (and people) can plot any of them by name. The column list must equal
-- services.features.extract.FEATURE_NAMES (a test checks it); a new feature
-- set means a new migration adding columns, and feature_set tells rows apart.
-- real (float4) is plenty for indicators and halves the table against float8.

CREATE TABLE feature_vector (
    asset_id text NOT NULL,
    time timestamptz NOT NULL,
    seq bigint NOT NULL,
    received_at timestamptz NOT NULL,             -- receipt of the raw window
    computed_at timestamptz NOT NULL DEFAULT now(),
    feature_set text NOT NULL,
    running boolean NOT NULL,
    mean real,
    rms real,
    peak real,
    peak_to_peak real,
    crest_factor real,
    kurtosis real,
    skewness real,
    shape_factor real,
    impulse_factor real,
    clearance_factor real,
    band_10_100_power real,
    band_100_500_power real,
    band_500_1000_power real,
    band_1000_2000_power real,
    band_2000_5000_power real,
    dominant_hz real,
    spectral_centroid_hz real,
    shaft_hz real,
    bpfo_hz real,
    bpfi_hz real,
    bsf_hz real,
    ftf_hz real,
    spec_bpfo real,
    spec_bpfi real,
    spec_bsf real,
    spec_ftf real,
    env_bpfo real,
    env_bpfi real,
    env_bsf real,
    env_ftf real,
    temperature_mean_c real,
    temperature_std_c real,
    temperature_slope_c_per_h real,
    sample_count real,
    nan_share real,
    clipping_share real,
    flat_line real,
    PRIMARY KEY (asset_id, time)
);
SELECT cbm_time_table('feature_vector', INTERVAL '1 day');
