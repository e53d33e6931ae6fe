"""Materialize feature views into the online store: ``ray job submit --working-dir . -- python jobs/materialize.py``.

Options: ``--feature-view NAME`` (repeatable; default every registered view), ``--start`` and ``--end``
(ISO-8601 event times; default everything up to now), or ``--request`` with the ``POST /feast/materialize``
body. Prints the result as JSON on the last line of output.
"""

import sys
from typing import Any

OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--feature-view",), {"action": "append", "default": [], "help": "a view to materialize (repeatable)"}),
    (("--start",), {"help": "earliest event time (ISO-8601)"}),
    (("--end",), {"help": "latest event time (ISO-8601)"}),
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from asgard_ray.entrypoints import run_entrypoint
    from asgard_ray.serving.materialize import MATERIALIZE_JOB, MaterializeRequest

    def body(a: Any) -> dict[str, Any]:
        return {"feature_views": a.feature_view, "start_date": a.start, "end_date": a.end}

    return run_entrypoint(MATERIALIZE_JOB, MaterializeRequest, argv, __doc__, options=OPTIONS, body=body)


if __name__ == "__main__":
    main(sys.argv[1:])
