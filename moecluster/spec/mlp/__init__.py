"""The MLP workload's contract: its shapes and presets, their parameter counts and twins."""
