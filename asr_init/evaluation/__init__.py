"""Hybrid decoding and the evaluation of a model (frame accuracy, phone error rate)."""
