"""`make bench`: run every tests/bench/bench_*.py module's main() in turn.

`python -m tests.bench codec hsm` runs only the named benchmarks."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import tests.bench as pkg


def build_name() -> str:
    """Which build the benchmarks run on: pure Python, or the mypyc build of
    ``make compiled`` (run with ``PYTHONPATH=build/compiled``)."""
    import posp.iso8583.message
    from tools.build_compiled import runs_compiled

    compiled = runs_compiled(posp.iso8583.message)
    return "compiled (mypyc, compiled-modules.txt)" if compiled else "pure Python"


def main(argv: list[str]) -> int:
    names = sorted(
        m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("bench_")
    )
    wanted = {f"bench_{a}" for a in argv}
    print(f"build: {build_name()}", flush=True)
    failed = 0
    for name in names:
        if wanted and name not in wanted:
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(f"tests.bench.{name}")
        try:
            module.main()
        except Exception as exc:  # a broken benchmark must not hide the others' figures
            failed += 1
            print(f"{name} FAILED: {exc!r}", flush=True)
        print(f"({name} took {time.perf_counter() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
