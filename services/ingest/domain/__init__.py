"""Ingest's pure logic: body decoding, write keys, validation, enrichment, skew, rate limits.

Nothing here does I/O or reads a clock; the caller passes `now` in.
"""
