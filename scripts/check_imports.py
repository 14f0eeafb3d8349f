"""Fail when a package imports against the direction collector → actions → correlator → probes."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ORDER = ["probes", "correlator", "actions", "collector"]
RANK = {p: i for i, p in enumerate(ORDER)}


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    bad = []
    for pkg in ORDER:
        for f in sorted((root / pkg).rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"), str(f))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in RANK and RANK[top] > RANK[pkg]:
                        bad.append(f"{f.relative_to(root)}:{node.lineno}: {pkg} imports {name}")
    for line in bad:
        print(line, file=sys.stderr)
    if bad:
        print("imports must go collector -> actions -> correlator -> probes only", file=sys.stderr)
        return 1
    print(f"ok: {', '.join(ORDER[::-1])} import in one direction")
    return 0


if __name__ == "__main__":
    sys.exit(main())
