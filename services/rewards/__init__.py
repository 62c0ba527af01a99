"""The rewards service: points ledger, earning rules, tiers, badges, streaks and referrals.

`config.py` holds the YAML rules model; `domain/` is the pure decision logic (no I/O, no clock).
"""
