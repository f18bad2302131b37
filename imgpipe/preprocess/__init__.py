"""Decode every raw image once into pixel shards and a manifest (the preprocess stage)."""
