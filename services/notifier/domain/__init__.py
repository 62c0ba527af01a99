"""The notifier's pure domain. No I/O, no clock reads: time and inputs are passed in.

Entry points: `decide.decide` (an input → campaigns fired, planned sends, conversions),
`decide.recheck` (a due planned send → send / capped / suppressed / deferred / cancelled /
failed), `projection.apply` (the per-user projection), `report.campaign_report`.
"""
