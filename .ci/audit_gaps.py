"""Close the gaps pip-audit leaves, and fail where it could not look.

pip-audit asks PyPI for each installed release's advisories at /pypi/NAME/VERSION/json. An index that
serves only each project's newest metadata (as the mirror on this project's CI machine does) answers
that with 404, and pip-audit then *skips* the distribution and still passes: an audit that checked
nothing. For every distribution pip-audit skipped, this asks /pypi/NAME/json, whose `vulnerabilities`
are the advisories of the newest release — the same data, for the installed release when it is the
newest. A known vulnerability fails, and so does an index that does not answer. A distribution held
back behind the newest release (which needs a newer Python, say) cannot be checked this way: it is
listed as not audited, with the newer release to look at, and does not fail the audit.

Usage::

    pip-audit --skip-editable -f json -o audit.json; python .ci/audit_gaps.py audit.json
    make audit      # both, on the project's virtualenv
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from importlib import metadata
from typing import Any

INDEX = "https://pypi.org/pypi"


def newest(name: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{INDEX}/{name}/json", timeout=30) as response:
            document: dict[str, Any] = json.load(response)
            return document
    except (urllib.error.URLError, TimeoutError, ValueError):
        return None


def main(report_path: str) -> int:
    try:
        with open(report_path) as report:
            dependencies = json.load(report)["dependencies"]
    except (OSError, ValueError, KeyError) as error:
        print(f"pip-audit left no report to read ({error}): nothing was audited")
        return 1
    found = [(d["name"], d["version"], v["id"]) for d in dependencies for v in d.get("vulns", [])]
    dependencies = [d for d in dependencies if "editable" not in d.get("skip_reason", "")]
    skipped = [d["name"] for d in dependencies if "skip_reason" in d]
    audited = sum(1 for d in dependencies if "skip_reason" not in d)
    held_back, unanswered = [], []
    for name in skipped:
        installed = metadata.version(name)
        page = newest(name)
        if page is None:
            unanswered.append(name)
        elif page["info"]["version"] != installed:
            newer = page["info"]["version"]
            held_back.append(f"{name} {installed}: the index has advisories for {newer} only")
        else:
            audited += 1
            advisories = [v["id"] for v in page.get("vulnerabilities", []) if not v.get("withdrawn")]
            found += [(name, installed, advisory) for advisory in advisories]
    print(f"audited {audited} of {len(dependencies)} installed distributions against PyPI's advisories")
    for name, version, advisory in found:
        print(f"VULNERABLE: {name} {version}: {advisory}")
    for line in held_back:
        print(f"not audited: {line}")
    if unanswered:
        print(f"NOT AUDITED, the index did not answer: {', '.join(unanswered)}")
    return 1 if found or unanswered else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
