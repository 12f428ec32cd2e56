"""Pieces several tabs share: the job panel, the steering and judges panels, diffs, notices,
choices of constitutions, models and runs, the labelling queue's probe, the theme."""
