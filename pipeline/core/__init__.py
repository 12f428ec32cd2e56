"""Foundations every layer uses: errors, atomic files, a job's run folder, shards, seeds,
text diffs. Imports nothing else of the pipeline."""
