"""The commands and their settings as dataclasses (the command registry, presets, job
files): torch-free, so the command line starts without loading a model."""
