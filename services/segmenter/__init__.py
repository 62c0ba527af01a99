"""The segmenter service: user profiles, identities, lifecycle stages and value segments.

Consumes `userops.events.v1`, owns its PostgreSQL database, publishes `userops.lifecycle.v1`.
The rules live in `domain/` (pure) and `config.py` (the YAML model).
"""
