"""The rewards service's pure domain: ledger, earning rules, tiers, streaks, badges, referrals.

Nothing here performs I/O or reads the clock; time is passed in. Entry points:
`decide.decide` (one input → one `Decision`), `decide.apply_foreign_award` (the referrer's side
of a referral), `simulate.simulate` (replay of recorded inputs with timers firing when due),
`tiers.tier_at` (the tier as a pure function of earned history and time).
"""
