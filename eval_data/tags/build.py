"""Build dev.jsonl and test.jsonl from the hand-written src/*.tsv (run from the repository root).

Each source line is ``language<TAB>urgency<TAB>sentiment<TAB>topics<TAB>text`` (topics comma-separated,
``-`` for none; ``\\n`` in the text is a line break). The German, French and Spanish files were written
scenario by scenario in parallel (line i of each tells a similar story), so the split is by scenario:
all translations of one scenario fall in the same split. English lines are split on their own. The
split is stratified by each scenario's rarest tag (its first topic, else its urgency) so that dev has
every topic to calibrate on: within a stratum, scenarios in stable-hash order, the first 45 % go to dev.

    .venv/bin/python eval_data/tags/build.py
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARALLEL = ("de", "fr", "es")
DEV_SHARE = 45  # percent
LANGUAGES = {"en", "de", "fr", "es"}
URGENCY, SENTIMENT = {"low", "normal", "high"}, {"negative", "neutral", "positive"}
TOPICS = {"security", "data-loss", "outage", "billing-dispute", "legal"}


def rows():
    for path in sorted((HERE / "src").glob("*.tsv")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            language, urgency, sentiment, topics, text = line.split("\t")
            topic_list = [] if topics == "-" else topics.split(",")
            assert language in LANGUAGES and urgency in URGENCY and sentiment in SENTIMENT, (path, number)
            assert set(topic_list) <= TOPICS and text.strip(), (path, number)
            scenario = f"parallel-{number}" if path.stem in PARALLEL else f"{path.stem}-{number}"
            yield (
                scenario,
                {
                    "id": f"{path.stem}-{number:03d}",
                    "text": text.replace("\\n", "\n"),
                    "tags": [urgency, sentiment, language, *topic_list],
                },
            )


def main() -> None:
    scenarios: dict[str, list[dict]] = {}
    for scenario, row in rows():
        scenarios.setdefault(scenario, []).append(row)
    strata: dict[str, list[str]] = {}
    for scenario, members in scenarios.items():
        tags = members[0]["tags"]
        strata.setdefault(tags[3] if len(tags) > 3 else tags[0], []).append(scenario)
    dev_scenarios = set()
    for members in strata.values():
        members.sort(key=lambda s: hashlib.sha256(s.encode()).hexdigest())
        dev_scenarios.update(members[: round(len(members) * DEV_SHARE / 100)])
    dev, test = [], []
    for scenario, members in scenarios.items():
        (dev if scenario in dev_scenarios else test).extend(members)
    for name, split in (("dev", dev), ("test", test)):
        (HERE / f"{name}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in split))
    print(f"dev: {len(dev)}, test: {len(test)}")


if __name__ == "__main__":
    main()
