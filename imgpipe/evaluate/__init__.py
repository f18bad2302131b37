"""Evaluation on the test split (the evaluate stage)."""
