"""Evaluation: the tournament of policies, its judges and ratings, the judge leaderboard,
power lines and principle rankings."""
