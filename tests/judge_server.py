"""The test suite's judge server: the stand-in judge shipped in `speechrole.devtools.judge_stand_in`.

Re-exported here so the tests keep importing it from one place (`from tests.judge_server import ...`);
`python -m tests.judge_server` runs the same command line as `python -m speechrole.devtools.judge_stand_in`.
"""

from __future__ import annotations

from speechrole.devtools.judge_stand_in import (
    FAULTS,
    METRICS,
    JudgeServer,
    Plan,
    RequestInfo,
    ServerState,
    SideScore,
    _Handler,
    _score,
    always_ok,
    main,
    share_faulty,
    sides,
)

__all__ = [
    "FAULTS",
    "METRICS",
    "JudgeServer",
    "Plan",
    "RequestInfo",
    "ServerState",
    "SideScore",
    "_Handler",
    "_score",
    "always_ok",
    "main",
    "share_faulty",
    "sides",
]

if __name__ == "__main__":
    main()
