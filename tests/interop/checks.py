"""One line per check and a closing count, for the Python interop suites."""
import traceback

results = {"passed": 0, "failed": 0}


def check(name, fn):
    """Runs one check; prints `ok - name` or `FAILED - name` with the traceback."""
    try:
        fn()
        results["passed"] += 1
        print(f"ok - {name}", flush=True)
    except Exception:
        results["failed"] += 1
        print(f"FAILED - {name}", flush=True)
        traceback.print_exc()
