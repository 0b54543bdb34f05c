"""Energy over a window of GPU work, read from one `DeviceSet` (see `energy.EnergyMeter`)."""
from moecluster.measure.meters.energy import EnergyMeter, EnergyReading, PowerTrace

__all__ = ["EnergyMeter", "EnergyReading", "PowerTrace"]
