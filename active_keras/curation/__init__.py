"""Curation: score a split once with a reference and keep its best fraction (`curate`)."""
