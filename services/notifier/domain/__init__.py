"""The notifier's pure domain. No I/O, no clock reads: time and inputs are passed in.

Entry points: `decide.decide` (an input → campaigns fired, planned sends, entries, conversions),
`recheck.recheck` (a due planned send → sent / capped / suppressed / deferred / cancelled /
failed) and `recheck.record_sent`, `delivery.delivery_record` (an outcome as a
`userops.deliveries.v1` record), `report.campaign_report` (counts and uplift),
`projection_json` (the stored form of the projection), `unsubscribe` (signed links),
`nps.weekly` (NPS per week).
"""
