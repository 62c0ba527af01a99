"""The traffic simulator behind `userops simulate` and `userops demo`.

`model` is pure and seeded: (seed, users, weeks, start) → the same time-ordered stream of
Segment wire events every time. `personas` holds the product's user types and channels,
`sender` posts a stream through ingest with the Segment SDK (or writes NDJSON).
"""
