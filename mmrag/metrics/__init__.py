"""Evaluation metrics: retrieval P@k / R@k / MRR@k with pseudo-relevance (retrieval)."""
