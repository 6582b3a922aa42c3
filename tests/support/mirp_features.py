"""Run by MIRP's own interpreter (.venv-mirp, scripts/install-mirp), never imported by the tests:
MIRP's features of NIfTI image/mask pairs under the settings given, as JSON.

stdin: {"cases": [[image, mask], ...], "settings": {MIRP extract_features keyword arguments},
        "output": path}
output: a JSON list, per case, of {MIRP feature name: value} (numbers only). A file, because
MIRP logs to stdout.
"""

from __future__ import annotations

import json
import numbers
import sys

from mirp import extract_features


def main() -> None:
    request = json.load(sys.stdin)
    results = []
    for image, mask in request["cases"]:
        (table,) = extract_features(image=image, mask=mask, **request["settings"])
        row = table.iloc[0]
        results.append({name: float(value) for name, value in row.items()
                        if isinstance(value, numbers.Real) and not isinstance(value, bool)})  # numpy too
    with open(request["output"], "w") as output:
        json.dump(results, output)


if __name__ == "__main__":
    main()
