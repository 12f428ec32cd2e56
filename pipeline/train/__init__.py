"""Training stages: SFT (SL-CAI), the preference model (with PMP) and PPO (RL-CAI)."""
