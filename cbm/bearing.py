"""Rolling-element bearing geometry and its characteristic defect frequencies."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BearingGeometry:
    """Geometry of one rolling-element bearing; lengths in millimetres.

    The default is a deep-groove 6205-class bearing (the bearing of the
    Case Western Reserve University test rig).
    """

    n_balls: int = 9
    ball_diameter_mm: float = 7.94
    pitch_diameter_mm: float = 39.04
    contact_angle_deg: float = 0.0

    def __post_init__(self) -> None:
        if self.n_balls < 3:
            raise ValueError(f"n_balls must be >= 3, got {self.n_balls}")
        if not 0 < self.ball_diameter_mm < self.pitch_diameter_mm:
            raise ValueError("ball_diameter_mm must be positive and below pitch_diameter_mm")
        if not 0 <= self.contact_angle_deg < 90:
            raise ValueError("contact_angle_deg must be in [0, 90)")

    @property
    def _ratio(self) -> float:
        """Return d/D·cos(φ), the term every defect frequency is built from."""
        return (
            self.ball_diameter_mm
            / self.pitch_diameter_mm
            * math.cos(math.radians(self.contact_angle_deg))
        )

    def orders(self) -> FaultOrders:
        """Return the defect frequencies as multiples of the shaft frequency."""
        r = self._ratio
        n = self.n_balls
        return FaultOrders(
            bpfo=n / 2 * (1 - r),
            bpfi=n / 2 * (1 + r),
            bsf=self.pitch_diameter_mm / (2 * self.ball_diameter_mm) * (1 - r * r),
            ftf=0.5 * (1 - r),
        )


@dataclass(frozen=True, slots=True)
class FaultOrders:
    """Defect frequencies per unit shaft frequency (orders).

    ``bsf`` is the ball spin frequency; a spall on a ball strikes both races,
    so its impacts repeat at ``2 * bsf``.
    """

    bpfo: float
    bpfi: float
    bsf: float
    ftf: float
