-- The alerter: per-asset severity state, and the alert outbox it delivers from.
--
-- The alerter is the only writer of alert_state.state: it keeps the state in
-- memory and writes it in the same transaction as the alerts that state change
-- produced, so a committed transition always has its alerts committed with it.
-- Grants come with the Grafana role, not here.

CREATE TABLE alert_state (
    asset_id text PRIMARY KEY,
    state jsonb NOT NULL,                         -- AssetAlertState.to_dict()
    -- Bumped on every change. The alerter compares it with its memory to tell
    -- whether its latest change of the asset is committed yet (see stage.py).
    version bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- An acknowledgement requested by `cbm alerts ack`: the command only asks,
    -- the running alerter applies it to the state and answers in ack_result.
    -- One pending request per asset is enough: a newer one replaces it.
    ack_by text,
    ack_requested_at timestamptz,
    ack_applied_at timestamptz,
    ack_result text
);

-- The outbox: one row per notification and receiver, written in the same
-- transaction as the state change, delivered later by the alerter's delivery
-- loop. A plain table, not a hypertable: the idempotency key must be UNIQUE on
-- its own and TimescaleDB only allows unique keys that contain the time column;
-- alerts are few (transitions, not samples), so a plain table stays small.
CREATE TABLE alert (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL,                            -- the notification's idempotency key
    receiver text NOT NULL CHECK (receiver IN ('slack', 'pagerduty', 'mqtt', 'log')),
    asset_id text NOT NULL,
    channel text NOT NULL,                        -- rul, anomaly, stale
    kind text NOT NULL,                           -- raise, escalate, downgrade, reminder, resolve
    level text NOT NULL,                          -- OK, WARNING, CRITICAL, EMERGENCY
    previous_level text NOT NULL,
    episode integer NOT NULL,
    episode_started_at timestamptz,
    time timestamptz NOT NULL,                    -- the notification's time
    prediction_time timestamptz,                  -- the prediction its figures come from
    rul_hours real NOT NULL,
    rul_low real NOT NULL,
    rul_high real NOT NULL,
    anomaly_score real NOT NULL,
    model_version text NOT NULL,
    top_features jsonb NOT NULL DEFAULT '[]',
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Delivery bookkeeping: a row is pending until delivered_at or failed_at is set.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    delivered_at timestamptz,
    failed_at timestamptz,                        -- permanent failure or attempts used up
    via text,                                     -- webhook, web_api, events_v2, mqtt, log
    -- Where a Slack Web API message went, so later messages of the episode can
    -- edit it (chat.update) and reply in its thread.
    slack_channel text,
    slack_ts text,
    slack_thread_ts text,
    acked_by text,
    acked_at timestamptz,
    -- Per receiver: the same notification goes to Slack and PagerDuty once each.
    UNIQUE (key, receiver)
);

-- The delivery loop's queue: pending rows in order, per asset and receiver.
CREATE INDEX alert_pending ON alert (asset_id, receiver, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX alert_asset_time ON alert (asset_id, time DESC);
CREATE INDEX alert_episode ON alert (asset_id, channel, episode);
