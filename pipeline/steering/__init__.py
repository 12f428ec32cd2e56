"""Steering directions extracted from a constitution or from labelled pairs."""
