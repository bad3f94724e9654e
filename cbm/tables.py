"""Table names: the one place that spells them (SQL elsewhere interpolates these)."""

from typing import Final

SCHEMA_MIGRATION: Final = "schema_migration"
ASSET: Final = "asset"
TEMPERATURE: Final = "temperature"
INGEST_WINDOW: Final = "ingest_window"
DEAD_LETTER: Final = "dead_letter"
FEATURE_VECTOR: Final = "feature_vector"
PREDICTION: Final = "prediction"
SHADOW_PREDICTION: Final = "shadow_prediction"
ALERT: Final = "alert"
ALERT_STATE: Final = "alert_state"
WORKER_STATUS: Final = "worker_status"
MAINTENANCE_EVENT: Final = "maintenance_event"
MODEL_PROMOTION: Final = "model_promotion"
