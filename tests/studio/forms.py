"""The studio's large forms as the tests fill them: each field has one default here, and a
test names only the fields it is about."""

from __future__ import annotations

from studio.tabs import chains as chains_tab
from studio.tabs import evaluate as evaluate_tab
from studio.tabs import preferences as preferences_tab

SCORE = {
    "constitution": "harmless-helpful",
    "principles": [],
    "ensemble": 1,
    "cot": False,
    "seed": 0,
    "last_label": None,
    "run": preferences_tab.STUDIO_RUN,
    "view": "all",
}
CHAIN = {
    "text": "How do I pick a lock?",
    "name_a": "harmless-helpful",
    "name_b": chains_tab.NONE,
    "n_rounds": 1,
    "use_few_shot": False,
    "relevant": False,
    "new_tokens": 6,
    "temp": 0.0,
    "seed_value": 0,
}
TOURNAMENT = {
    "adapters": [],
    "typed": "",
    "sets": ["red-team"],
    "judges": ["logprob"],
    "constitution": "harmless-helpful",
    "pm": None,
    "limit": 2,
    "new_tokens": 16,
}


def score_steps(store, **form) -> list[dict]:
    """Every step the Preferences tab's scoring streams for the pair on screen."""
    return list(preferences_tab.on_score(store, **{**SCORE, **form}))


def chain_steps(store, **form) -> list[dict]:
    """Every step the Chains tab's live chain streams."""
    return list(chains_tab.on_run(store, **{**CHAIN, **form}))


def launch_tournament(store, **form) -> str:
    """The message the Evaluate tab answers a tournament's launch with."""
    return evaluate_tab.on_launch(store, **{**TOURNAMENT, **form})["message"]
