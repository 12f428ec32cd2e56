"""Training stages: SFT (SL-CAI), the preference model, PPO (RL-CAI) and DPO."""
