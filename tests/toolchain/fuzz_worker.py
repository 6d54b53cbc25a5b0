"""A long-lived fuzzing worker: reads one file path per line on stdin, runs on it what
`edgekit inspect` and `edgekit inspect --security` run (detection, the security policy and
report, then the inspect stage), and answers one JSON line: the exit code the CLI would
give and, for an unexpected exception, its traceback.

The frameworks are imported once, so thousands of mutants cost milliseconds each. A
native crash kills the worker: the fuzzer records it as the CLI would (the inspect stage's
child dies, exit 2) and starts a new worker.
"""

from __future__ import annotations

import json
import sys
import traceback


def run_case(path: str) -> dict:
    from edgekit.errors import BadInput, EdgekitError
    from edgekit.formats import detect
    from edgekit.loading import security_report
    from edgekit.pipeline import inspect_stage

    try:
        found = detect(path)
        if found.spec.framework == "data":
            raise BadInput(f"{path}: is a data file, not a model.")
        security_report(path)
        inspect_stage(path)
        return {"code": 0}
    except EdgekitError as exc:
        return {"code": exc.exit_code, "message": exc.message[:300]}
    except MemoryError:
        return {"code": 2, "message": "MemoryError (the CLI's stage limit turns this into a clean refusal)"}
    except BaseException:  # noqa: BLE001 - anything else is what the fuzzer is looking for
        return {"code": 5, "traceback": traceback.format_exc()[-3000:]}


def main() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # answers go to a private copy of stdout; what native code prints to fd 1 goes to stderr
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # warm the frameworks up once (what the CLI's stage child imports per run)
    from edgekit.validators.runners import runner_class

    for runtime in ("litert", "onnxruntime", "executorch", "torch_export", "keras"):
        try:
            runner_class(runtime).import_runtime()
        except Exception:  # noqa: BLE001 - a missing extra shows up as exit 4 per case
            pass
    print(json.dumps({"ready": True}), file=answers, flush=True)
    for line in sys.stdin:
        path = line.rstrip("\n")
        if not path:
            continue
        print(json.dumps(run_case(path)), file=answers, flush=True)


if __name__ == "__main__":
    main()
