"""Inputs of the kinds that break readers (damaged downloads, hostile shards and metadata), made on purpose.

The tests and ``benchmarks/hostile_inputs.py`` use them; each module also runs, in a fresh process, the
operations the inputs used to blow up, and prints their outcomes and peak memory
(``python -m speechbrain_datar.testing.hostile_media <kind>=<path> ...``).
"""
