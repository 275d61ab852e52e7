"""Which language a text is written in: the one language detector of the project, lingua
(``lingua-language-detector``, deterministic, models shipped in the wheel). Tag scoring (``tags``:
language tag sets) and the self-training guard (``mlops.selftraining``: a stream in another language
is refused) both use it.

The detector knows only the languages it is asked about (the language tag set's tags), which keeps it
accurate on short texts: with 75 candidates, "ok thanks" has many readings. To tell a ticket in
another language from one of ours, a few ``others`` are detected too; their share of the
probability is reported as ``other`` and no configured language is set for such a ticket.

Memory: lingua keeps its models in process-wide tables (two detectors over the same language share
them). High-accuracy mode adds 1- to 5-gram models to the trigrams and reads texts under 120 characters
with all of them: measured on the demo's 4 languages and 4 others, 276 MB against 23 MB in
low-accuracy mode, for a language accuracy on the tags dev split of 1.000 against 0.993
(``bench/bench_language_detector.py``). ``TRIAGE_LANGUAGE_ACCURACY`` chooses (default low); the
detector is built with its models loaded (``get_language_detector``), at worker start where the
other models warm.

>>> detector = LanguageDetector(["en", "de"], others=["pt"])                        # doctest: +SKIP
>>> detector.probabilities(["Hallo, mein Thermostat ist offline"]).round(2)          # doctest: +SKIP
array([[0.03, 0.95, 0.02]])                                                          # en, de, other
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .scorers import InvalidInput, validate_texts


@lru_cache(maxsize=1)
def supported_language_codes() -> frozenset[str]:
    """ISO 639-1 codes (lower case) of every language the detector knows."""
    from lingua import Language

    return frozenset(language.iso_code_639_1.name.lower() for language in Language.all())


def _languages(codes: Sequence[str]):
    from lingua import IsoCode639_1, Language

    known = supported_language_codes()
    out = []
    for code in codes:
        if not isinstance(code, str) or code.lower() not in known:
            raise InvalidInput(f"{code!r} is not an ISO 639-1 code the language detector knows")
        out.append(Language.from_iso_code_639_1(IsoCode639_1.from_str(code.lower())))
    return out


class LanguageDetector:
    """Probabilities of ``codes`` (and of ``other``: any of ``others``) for each text.

    ``probabilities(texts)`` is ``(n_texts, len(codes) + 1)``, rows summing to 1; the last column is
    the ``others``' share (0 when there are none). ``low_accuracy``: trigrams only (see the module
    docstring); ``preload``: load the models now rather than on first use.
    """

    name = "language"
    model_ref = "lingua"

    def __init__(
        self, codes: Sequence[str], *, others: Sequence[str] = (), low_accuracy: bool = False, preload: bool = False
    ) -> None:
        from importlib.metadata import version

        from lingua import LanguageDetectorBuilder

        self.codes = [c.lower() for c in codes]
        if len(set(self.codes)) != len(self.codes) or not self.codes:
            raise InvalidInput(f"language codes must be distinct and at least one, got {list(codes)}")
        self.others = [c.lower() for c in others if c.lower() not in self.codes]
        languages = _languages(self.codes) + _languages(self.others)
        # lingua refuses a detector over a single language: add one other, whose share goes to "other".
        if len(languages) == 1:
            fallback = "en" if self.codes[0] != "en" else "de"
            self.others.append(fallback)
            languages += _languages([fallback])
        self._index = {language: i for i, language in enumerate(languages)}
        self._code = {language: language.iso_code_639_1.name.lower() for language in languages}
        builder = LanguageDetectorBuilder.from_languages(*languages)
        if low_accuracy:
            builder = builder.with_low_accuracy_mode()
        if preload:
            builder = builder.with_preloaded_language_models()
        self._detector = builder.build()
        self._lock = threading.Lock()
        self.low_accuracy = low_accuracy
        mode = "-low" if low_accuracy else ""
        self.version = (
            f"lingua-{version('lingua-language-detector')}{mode}:{','.join(self.codes)}|{','.join(self.others)}"
        )

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        texts = validate_texts(texts)
        n_codes = len(self.codes)
        out = np.zeros((len(texts), n_codes + 1), dtype=np.float64)
        with self._lock:
            rows = self._detector.compute_language_confidence_values_in_parallel(texts) if texts else []
        for i, row in enumerate(rows):
            for value in row:
                column = self._index[value.language]
                out[i, min(column, n_codes)] += value.value
            total = out[i].sum()
            if total > 0:
                out[i] /= total
            else:  # no letters at all (digits, emoji): nothing is known, so nothing is claimed
                out[i, n_codes] = 1.0
        return out

    def detect(self, texts: Sequence[str]) -> list[str | None]:
        """The most likely language of each text (ISO 639-1, any of ``codes`` and ``others``); None for
        a text without letters."""
        texts = validate_texts(texts)
        with self._lock:
            found = self._detector.detect_languages_in_parallel_of(texts) if texts else []
        return [None if language is None else self._code[language] for language in found]


_detectors: dict[tuple[tuple[str, ...], tuple[str, ...], bool], LanguageDetector] = {}
_detectors_lock = threading.Lock()


def low_accuracy_configured() -> bool:
    from django.conf import settings

    return settings.TRIAGE_LANGUAGE_ACCURACY == "low"


def get_language_detector(
    codes: Sequence[str], others: Sequence[str] = (), *, low_accuracy: bool | None = None
) -> LanguageDetector:
    """One detector per (codes, others, mode) per process, built with its models loaded (so a worker
    that warms it pays nothing at its first batch). ``low_accuracy`` defaults to
    ``TRIAGE_LANGUAGE_ACCURACY``."""
    if low_accuracy is None:
        low_accuracy = low_accuracy_configured()
    key = (tuple(c.lower() for c in codes), tuple(c.lower() for c in others), low_accuracy)
    with _detectors_lock:
        if key not in _detectors:
            _detectors[key] = LanguageDetector(key[0], others=key[1], low_accuracy=low_accuracy, preload=True)
        return _detectors[key]


def language_share(
    texts: Sequence[str], language: str, others: Sequence[str], *, sample: int = 200, seed: int = 0
) -> float:
    """Share of (a sample of ``sample``) ``texts`` whose most likely language, among ``language`` and
    ``others``, is ``language`` (the self-training guard).

    High-accuracy mode whatever ``TRIAGE_LANGUAGE_ACCURACY`` says: the guard reads short tickets, where
    trigrams alone err (an English test stream of one-line tickets: 0.85 read as English in low-accuracy
    mode, 1.00 in high), and it runs in the training worker's child, which gives its memory back when
    the run ends. All 75 languages in high-accuracy mode would take gigabytes, hence ``others``. A text
    in none of the candidates' scripts (Cyrillic against Latin candidates) or without letters ("12345",
    emoji) is no hit. The sample is drawn with ``seed``, and lingua is deterministic: the same stream
    gets the same answer.

    >>> language_share(["Where is my parcel?", "Wo ist mein Paket?"], "en", ["de"])     # doctest: +SKIP
    0.5
    """
    detector = get_language_detector([language], others, low_accuracy=False)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(texts), size=min(sample, len(texts)), replace=False) if len(texts) else []
    found = detector.detect([texts[int(i)] for i in picked])
    return sum(code == detector.codes[0] for code in found) / len(found) if found else 0.0
