"""The simulated fleet a backtest runs on: its parameters, importable without the simulator.

``cbm`` builds every verb's arguments at start-up, workers included, and the
backtest's defaults come from here; the simulator, features and inference
cores load only when a fleet is actually simulated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.simulator.fleet import AssetSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatedFleet:
    """Describe the fleet to simulate (``make_fleet`` parameters and the run's seed)."""

    n_assets: int = 8
    # Not the shipped model's training seed (7): the backtest should see new machines.
    seed: int = 11
    life_mean_hours: float = 200.0
    healthy_share: float = 0.25
    hours_per_window: float = 1.0
    prefix: str = "bt"

    def specs(self) -> list[AssetSpec]:
        """Return the fleet's asset specs."""
        from services.simulator.fleet import make_fleet  # noqa: PLC0415 - keep start-up light

        return make_fleet(
            self.n_assets,
            seed=self.seed,
            life_mean_hours=self.life_mean_hours,
            healthy_share=self.healthy_share,
            prefix=self.prefix,
        )
