"""Orchestration: the job queue (a process per job), the one-click pipeline and the list
of runs."""
