"""Records and where they are kept: constitutions, prompt sets, preference pairs and labels,
Stack Exchange comparisons, and the SQLite workspace."""
