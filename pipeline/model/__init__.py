"""The model runtime: loading (embedded, local folders, hub ids, adapters), generation,
scoring, hidden states and the steering hook, and the states cache."""
