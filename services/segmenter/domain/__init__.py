"""The segmenter's pure domain: user facts, lifecycle stages, segments and replay. No I/O.

Entry points: `batch.apply_batch` and `batch.apply_timers` (the one batch decision of the live
service and replay), `decide.apply_event`, `decide.apply_timer`, `merge.merge_alias`,
`lifecycle.compute_stage`, `lifecycle.next_deadline`, `replay.replay`.
"""
