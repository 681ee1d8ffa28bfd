"""The rule sets of bench/run.py: one rule that matches, decoys that almost do, and many that do not.

- ``match``: ``body.type == 'payment_intent.succeeded' && body.data.object.amount > `1000``` → POST to the sink;
- decoys: the same type with an amount test that never passes (they are candidates for every event);
- the rest: ``body.type == 'x.N' && body.data.object.amount > `K``` (never the event's type).

Every rule has the same one-step ``http`` delivery, so only matching differs between sizes.
"""

from __future__ import annotations

from pathlib import Path

DECOYS = 5
SOURCE = "stripe"


def _rule(rule_id: str, filter_: str, sink_url: str) -> str:
    return f"""\
  - id: {rule_id}
    source: {SOURCE}
    filter: "{filter_}"
    steps:
      - id: deliver
        action: http
        with:
          url: "{sink_url}"
          json: {{id: "{{{{ body.id }}}}", sent: "{{{{ body.sent_at }}}}"}}
"""


PER_FILE = 1000  # rule files are capped at 1 MB; a large set is split the way a team would split it


def rules_texts(count: int, sink_url: str) -> list[str]:
    """Rule files holding ``count`` rules in all (at least 1 + DECOYS), the source and the match in the first."""
    parts = [
        _rule("match", "body.type == 'payment_intent.succeeded' && body.data.object.amount > `1000`", sink_url),
    ]
    decoys = min(DECOYS, max(0, count - 1))
    for i in range(decoys):
        parts.append(
            _rule(
                f"decoy-{i}",
                f"body.type == 'payment_intent.succeeded' && body.data.object.amount > `{10**9 + i}`",
                sink_url,
            )
        )
    for i in range(max(0, count - 1 - decoys)):
        parts.append(
            _rule(f"other-{i:05d}", f"body.type == 'x.{i}' && body.data.object.amount > `{i % 5000}`", sink_url)
        )
    head = f"sources:\n  - id: {SOURCE}\n    description: benchmark source\n    verify: {{scheme: none}}\n"
    texts = []
    for n, start in enumerate(range(0, len(parts), PER_FILE)):
        texts.append((head if n == 0 else "") + "rules:\n" + "".join(parts[start : start + PER_FILE]))
    return texts


def write_rules(folder: Path, count: int, sink_url: str) -> Path:
    """Write the rule files; returns the first (the one holding the source, the match and the decoys)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.yaml"):
        old.unlink()
    paths = []
    for n, text in enumerate(rules_texts(count, sink_url)):
        path = folder / f"bench-{n:03d}.yaml"
        path.write_text(text)
        paths.append(path)
    return paths[0]
