"""Ingest: the Segment-compatible HTTP API that validates, enriches and publishes events to Kafka.

Answers `200 {"success": true}` only after Kafka acknowledged every event of a request
(DESIGN.md §2). Stateless; sources and limits come from `config/ingest.yaml`.
"""
