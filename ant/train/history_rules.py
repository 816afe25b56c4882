"""The evaluation's two history rules, by name: a user's training items kept among the candidates, or excluded.

Its own torch-free module so that the tables (ant.analysis) name them without importing torch, which would be
1.5 s of start-up for every table job. The rules themselves are applied in ant.train.evaluate.
"""

from __future__ import annotations

KEPT, EXCLUDED = "history_kept", "history_excluded"
HISTORY_RULES = (KEPT, EXCLUDED)


def history_rule(exclude_history: bool) -> str:
    return EXCLUDED if exclude_history else KEPT
