"""Corpus sources, packing into blocks, and the on-disk cache."""
