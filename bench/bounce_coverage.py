"""How many provider replies of tests/samples/provider_replies.toml each class of the shipped
rules matches, how many fall to "unknown", and how many disagree with the class a person gave."""

from __future__ import annotations

import sys
import tomllib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.bounce_classes import BOUNCE_CLASSES
from gateway.bounce_rules import classify

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "samples" / "provider_replies.toml"


def main() -> int:
    replies = tomllib.loads(SAMPLES.read_text("utf-8"))["replies"]
    matched: Counter[str] = Counter()
    providers: dict[str, set[str]] = {}
    wrong = 0
    for reply in replies:
        found = classify(reply["code"], reply["text"])
        matched[found.bounce_class] += 1
        providers.setdefault(found.bounce_class, set()).add(reply["provider"])
        wrong += found.bounce_class != reply["class"]
    print(f"{len(replies)} replies from public documentation ({SAMPLES.name})")
    print(f"{'class':<18} {'replies':>7}  providers")
    for name in BOUNCE_CLASSES:
        if matched[name] and name != "unknown":
            print(f"{name:<18} {matched[name]:>7}  {', '.join(sorted(providers[name]))}")
    print(f"{'unknown (no rule)':<18} {matched['unknown']:>7}")
    print(f"class differing from the one given by hand: {wrong}")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
