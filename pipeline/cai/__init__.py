"""The Constitutional AI method: critique-revision chains, the SFT data, the log-prob A/B
judge, the trust statistics of labels, and the preference model."""
