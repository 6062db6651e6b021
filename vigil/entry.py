"""What every command does before Prefect starts, and how it reports a user's error: shared by
the `vigil` command line and the DVC stage commands (``vigil stage <name>``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from vigil.plumbing import debugging

EXIT_CONFIG = 2  # params.yaml refused
EXIT_DATA = 3  # data version refused, validation failed, the data itself is bad, or a store unusable
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as a shell reports SIGINT


def _stop_on_signal() -> None:
    """First Ctrl-C (or SIGTERM): ask every fit to stop at its next batch and unwind the run,
    which then publishes nothing. A second one: exit at once, skipping all clean-up (torch's
    threads would otherwise abort the process on their way down)."""
    import signal

    from components.detectors import request_stop

    signals = []

    def handle(signum, frame):
        signals.append(signum)
        if len(signals) > 1:
            os._exit(EXIT_INTERRUPTED)
        request_stop()
        print(
            "\nvigil: stopping; nothing will be published (Ctrl-C again to quit at once)", file=sys.stderr, flush=True
        )
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    _stop_fits_on_any_signal(request_stop)


def _stop_fits_on_any_signal(request_stop: Callable[[], None]) -> None:
    """While a flow runs, Prefect's engine holds SIGTERM with a handler of its own: it unwinds the
    flow first and hands the signal on only then, so a fit in a task thread would train on (a
    `timeout vigil run` took minutes). The wakeup fd hears every signal whatever handler is set:
    a thread reading it asks the fits to stop at their next batch at once."""
    import signal
    import threading

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    except ValueError:  # not the main thread: the handlers above do it alone
        return

    def watch() -> None:
        while True:
            if any(b in (signal.SIGINT, signal.SIGTERM) for b in os.read(read_end, 64)):
                request_stop()

    threading.Thread(target=watch, name="vigil-stop-on-signal", daemon=True).start()


def _run_flows(body: Callable[[], str], warm_up: Sequence[str] = ()) -> None:
    """``body`` against a Prefect API that dies with this process, its flow runs tagged with
    this process; open runs of dead processes are crashed first, this one's cancelled on Ctrl-C.
    ``warm_up``: modules the body imports, imported while a temporary API starts."""
    import prefect

    from components.text import printable
    from vigil.prefect_api import cancel_own_runs, crash_runs_of_dead_processes, prefect_api, process_tags

    with prefect_api(warm_up=warm_up):
        crash_runs_of_dead_processes()
        try:
            with prefect.tags(*process_tags()):
                print(printable(body()))
        except KeyboardInterrupt:
            cancel_own_runs("interrupted (Ctrl-C or SIGTERM)")
            raise


def step_imports(cfg, step: str) -> list[str]:
    """What a `vigil run` step, or its DVC stage, will import that takes seconds (here, after
    Prefect: Great Expectations 3.0, MLflow 1.4, torch 1.2), to import while the temporary
    Prefect API starts (4.3 s) instead of after it: validation in `prepare`, the registry from
    `tune` on, torch where a torch detector is fitted."""
    from components.detectors import DETECTORS, TorchDetector

    mods = ["great_expectations"] if step in ("all", "prepare") else []
    # every name in cfg.detectors was checked against DETECTORS when params.yaml loaded
    if step in ("all", "tune", "train") and any(issubclass(DETECTORS[n], TorchDetector) for n in cfg.detectors):
        mods.append("torch")
    return mods + (["mlflow"] if step != "prepare" else [])


def run_entry(body: Callable[[], str], runs_flows: bool = True, warm_up: Sequence[str] = ()) -> int:
    """Run ``body``, print what it returns, and turn the errors a user causes into one message
    and an exit code instead of a traceback. ``runs_flows``: against a Prefect API that dies
    with this process (vigil/prefect_api.py); ``warm_up``: modules the body will import,
    imported while that API starts."""
    import threading
    import traceback

    from components.datasets import DataError  # validation and data-version refusals are DataErrors too
    from components.detectors import FormatError
    from components.text import printable
    from vigil.config import ConfigError

    if threading.current_thread() is threading.main_thread():
        _stop_on_signal()
    try:
        if runs_flows:
            _run_flows(body, warm_up)
        else:
            print(printable(body()))
    except KeyboardInterrupt:
        print("vigil: interrupted; the published data, models, reports and champion are as they were", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigError, DataError, FormatError) as exc:  # tasks.alerts.StoreError is a DataError
        if debugging():
            traceback.print_exc()
        print(f"vigil: {printable(exc)}", file=sys.stderr)  # names from outside: control characters shown, not run
        return EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_DATA
    return 0


def add_cluster_arguments(parser) -> None:
    """``--workers`` / ``--scheduler``: where a command's cells, trials or series run (the
    ``cluster`` section of params.yaml, overridden)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=int, metavar="N", help="on a local Dask cluster of N processes (default: cluster.workers)"
    )
    where.add_argument(
        "--scheduler", metavar="URL", help="on the running Dask cluster at URL, e.g. tcp://127.0.0.1:8786"
    )
