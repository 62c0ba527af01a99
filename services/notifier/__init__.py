"""The notifier: retention messaging (DESIGN.md §6).

`config.py` holds the campaign rules (`config/notifier.yaml`); `domain/` is the pure core: the
per-user projection, trigger matching, planned sends and their re-check at send time, caps, quiet
hours, templates, unsubscribe tokens, NPS and uplift. No I/O and no clock reads in `domain/`.
"""
