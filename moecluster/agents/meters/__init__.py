"""Energy over a window of GPU work, read from one `DeviceSet` (see `energy.EnergyMeter`)."""
from .energy import EnergyMeter, EnergyReading, PowerTrace

__all__ = ["EnergyMeter", "EnergyReading", "PowerTrace"]
