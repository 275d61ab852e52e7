"""Which language a ticket is written in, with lingua (``lingua-language-detector``, models shipped in the wheel).

The detector knows only the languages it is asked about (the language tag set's tags), which keeps it
accurate on short texts: with 75 candidates, "ok thanks" has many readings. To tell a ticket in
another language from one of ours, a few ``others`` are detected too; their share of the
probability is reported as ``other`` and no configured language is set for such a ticket.

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
    the ``others``' share (0 when there are none).
    """

    name = "language"
    model_ref = "lingua"

    def __init__(self, codes: Sequence[str], *, others: Sequence[str] = ()) -> None:
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
        self._detector = LanguageDetectorBuilder.from_languages(*languages).build()
        self._lock = threading.Lock()
        self.version = f"lingua-{version('lingua-language-detector')}:{','.join(self.codes)}|{','.join(self.others)}"

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


_detectors: dict[tuple[tuple[str, ...], tuple[str, ...]], LanguageDetector] = {}
_detectors_lock = threading.Lock()


def get_language_detector(codes: Sequence[str], others: Sequence[str] = ()) -> LanguageDetector:
    """One detector per (codes, others) per process: lingua loads its models on first use."""
    key = (tuple(c.lower() for c in codes), tuple(c.lower() for c in others))
    with _detectors_lock:
        if key not in _detectors:
            _detectors[key] = LanguageDetector(key[0], others=key[1])
        return _detectors[key]
