"""Corpus readers and the embedded synthetic corpus: audio + phone alignments as Utterance records."""
