"""Write tests/durations.json, the expected time of each test that took a second or more, from
the JUnit XML of a whole run (``pytest --junitxml FILE``): ``python -m tests.support.durations
FILE``. The conftest orders the tests by it under xdist; nothing is judged by it."""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.conftest import DURATIONS, ROOT


def node_id(classname: str, name: str) -> str:
    """The pytest node id of a JUnit test case (module path, any class, the test's name)."""
    parts = classname.split(".")
    for k in range(len(parts), 0, -1):
        module = "/".join(parts[:k]) + ".py"
        if (ROOT / module).is_file():
            return "::".join([module, *parts[k:], name])
    raise ValueError(f"no module for {classname}")


def main(junit: str) -> None:
    seconds = {node_id(case.get("classname", ""), case.get("name", "")):
               round(float(case.get("time", "0")), 1)
               for case in ET.parse(junit).iter("testcase")}
    kept = {test: took for test, took in sorted(seconds.items()) if took >= 1.0}
    Path(DURATIONS).write_text(json.dumps(kept, indent=0) + "\n")
    print(f"{len(kept)} tests of {len(seconds)} took a second or more: {DURATIONS}")


if __name__ == "__main__":
    main(sys.argv[1])
