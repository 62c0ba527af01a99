"""The rewards service's pure domain: ledger, earning rules, tiers, streaks, badges, referrals.

Nothing here performs I/O or reads the clock; time is passed in. Entry points:
- `decide.decide(state, input, cfg, now, budgets)` → `Decision` (one input: an event, a lifecycle
  event, a due timer or a redemption command); `decide.budgeted_rules` names the budgets to lock;
  `decide.apply_foreign_award` books the referrer's side of a referral on the referrer's state;
- `simulate.simulate` / `simulate.Replay`: recorded inputs replayed with timers firing when due;
- `tiers.tier_at`: the tier as a pure function of earned history, policy and time;
- `state_json.to_json` / `from_json`: the stored form of a user's state.
Modules: `ledger` (accounts, entries, transactions, lots, holds), `book` (the operations moving
points), `rules` (points, caps, budgets), `conditions`, `amounts`, `awards`, `earning`,
`redemption`, `timer_effects`, `tiers`, `streaks`, `badges`, `referrals`, `programs`,
`inputs`, `outputs`, `state`.
"""
