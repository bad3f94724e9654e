"""Default training choices in one import-free module, so ``cbm --help`` stays instant.

docs/model.md explains each choice.
"""

from __future__ import annotations

from typing import Final

# The simulated fleet of the default model.
FLEET_ASSETS: Final = 320
FLEET_SEED: Final = 7
LIFE_MEAN_HOURS: Final = 200.0
HEALTHY_SHARE: Final = 0.2
HOURS_PER_WINDOW: Final = 1.0
SPLIT_SEED: Final = 7

# Target, sequences, interval.
CAP_HOURS: Final = 60.0
LOOKBACK: Final = 10
COVERAGE: Final = 0.8

# Network and schedule.
UNITS: Final = 32
DENSE_UNITS: Final = 16
LEARNING_RATE: Final = 1e-3
BATCH_SIZE: Final = 256
MAX_EPOCHS: Final = 100
PATIENCE: Final = 10
NETWORK_SEED: Final = 7
