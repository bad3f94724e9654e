-- Maintenance history: what people (or a CMMS import) record happened to a machine.
--
-- The ground truth of the backtest: a 'failure' ends a life the predictions
-- should have warned about; 'repair' and 'replacement' are interventions (an
-- alert that led to a planned replacement prevented the failure it foresaw, so
-- the backtest can be told to count them as failures too); 'inspection' is a
-- look without a change, kept for the record and for Grafana annotations.
--
-- Keyed by (asset_id, time, kind): recording the same event twice (a retried
-- command, a repeated import) is a no-op under ON CONFLICT DO NOTHING, while a
-- failure and the replacement that followed it at the same minute stay apart.
-- time is the event time (when it happened); recorded_at and recorded_by say
-- when and by whom it was written down, which can be days later.
-- A hypertable like the other time-keyed tables so the same queries and
-- retention apply; events are few, hence the one-year chunks.

CREATE TABLE maintenance_event (
    asset_id text NOT NULL,
    time timestamptz NOT NULL,
    kind text NOT NULL CHECK (kind IN ('failure', 'repair', 'replacement', 'inspection')),
    note text NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    recorded_by text NOT NULL DEFAULT current_user,
    PRIMARY KEY (asset_id, time, kind)
);
SELECT cbm_time_table('maintenance_event', INTERVAL '365 days');
CREATE INDEX maintenance_event_kind_time ON maintenance_event (kind, time);
