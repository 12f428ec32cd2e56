"""The labelling queue's probe, kept by the studio process: per model and pair set, the
pairs' features are read once and the probe is refitted in a background thread every few
new labels, so pressing Next never waits for a model."""

from __future__ import annotations

import hashlib
import threading

from pipeline.data.preferences import Pair
from pipeline.evaluation.labelling_queue import (
    MIN_FIT,
    REFIT_EVERY,
    QueueFit,
    fit_queue,
    labelled_rows,
)
from pipeline.model.hidden import decoder_layers
from pipeline.model.loading import load_model
from pipeline.values.features import pair_features


def set_key(model: str, pairs: list[Pair]) -> tuple[str, str]:
    return model, hashlib.sha256("\n".join(p.id for p in pairs).encode()).hexdigest()


class QueueProbe:
    """Fits keyed by (model, pair set); `current` answers at once with the newest fit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._features: dict[tuple[str, str], object] = {}
        self._fits: dict[tuple[str, str], QueueFit] = {}
        self._errors: dict[tuple[str, str], str] = {}
        self._threads: dict[tuple[str, str], threading.Thread] = {}

    def current(self, model: str, pairs: list[Pair], humans: dict[str, str]) -> QueueFit | None:
        """The newest fit for these pairs (None before the first); starts a refit in the
        background when REFIT_EVERY labels came in since it (or none exists yet)."""
        key = set_key(model, pairs)
        labelled = len(labelled_rows(pairs, humans)[0])
        with self._lock:
            fit = self._fits.get(key)
            running = key in self._threads and self._threads[key].is_alive()
            stale = fit is None or labelled - fit.labels >= REFIT_EVERY
            if stale and not running and labelled >= MIN_FIT:
                thread = threading.Thread(
                    target=self._refit, args=(key, pairs, dict(humans)), daemon=True
                )
                self._threads[key] = thread
                thread.start()
        return fit

    def error(self, model: str, pairs: list[Pair]) -> str:
        """Why the last refit failed ('' when it did not)."""
        return self._errors.get(set_key(model, pairs), "")

    def wait(self, timeout: float = 600.0) -> None:
        """Join the refits under way (tests, and a clean shutdown)."""
        for thread in list(self._threads.values()):
            thread.join(timeout)

    def _refit(self, key: tuple[str, str], pairs: list[Pair], humans: dict[str, str]) -> None:
        try:
            d = self._features.get(key)
            if d is None:
                loaded = load_model(key[0])
                layer = (len(decoder_layers(loaded.model)) + 1) // 2
                d = pair_features(loaded, pairs, "answer_mean", [layer]).d[:, 0]
                self._features[key] = d
            fit = fit_queue(d, pairs, humans)
        except Exception as exc:  # a background thread has no caller to raise to
            self._errors[key] = f"the queue's probe could not be fitted: {exc}"
            return
        if fit is not None:
            with self._lock:
                self._fits[key] = fit
                self._errors.pop(key, None)


QUEUE_PROBE = QueueProbe()  # one per studio process
