"""Energy over a window of GPU work, read from one `DeviceSet` (see `energy.EnergyMeter`)."""
from .energy import EnergyMeter, EnergyReading, PowerSampler

__all__ = ["EnergyMeter", "EnergyReading", "PowerSampler"]
