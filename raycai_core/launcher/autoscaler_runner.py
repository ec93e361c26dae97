"""raycai autoscaler: Ray's own autoscaler (v1 monitor) for one raycai cluster, on its head.

Copied by raycai into the cluster directory as `raycai_autoscaler.py` (edits are
overwritten). The head launcher starts Ray with `--no-monitor` and runs this program in a
process of its own, restarting it with a growing delay when it exits, so that a crash of the
autoscaler never takes the head down (`ray start --block` stops the whole node when one of
its children dies). Standard library and Ray only; the node provider is
`raycai_cml_provider.py` beside this file.

    python raycai_autoscaler.py --address <head ip>:<gcs port> --config <autoscaler.json>

Exit codes: 3 no workload credentials (autoscaling stays off), 4 Ray's autoscaler cannot be
imported (stays off), anything else: the launcher starts it again.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

EXIT_NO_CREDENTIALS = 3
EXIT_NO_RAY = 4
# Lines Ray's monitor writes on every pass; they say nothing a reader needs.
QUIET = ("The autoscaler took ", "Autoscaler has not yet received load metrics")
RAY_LOGGERS = ("ray", "ray.autoscaler", "ray.autoscaler._private")


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(QUIET)


def setup_logging() -> None:
    """One line per record on stdout (the launcher appends it to logs/autoscaler.log), with
    the launcher's UTC time stamp, so that `raycai logs --all` merges it with the others."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ [autoscaler] %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_Quiet())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # Importing Ray gives its loggers handlers of their own that do not propagate: call this
    # again once Ray is imported.
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", required=True, help="the head's GCS, ip:port")
    parser.add_argument("--config", required=True, help="autoscaler.json")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.dont_write_bytecode = True  # nothing written into the project's cluster directory
    sys.path.insert(0, here)
    setup_logging()
    log = logging.getLogger("raycai_autoscaler")
    try:
        from raycai_cml_provider import NoCredentials, workload_credentials
    except Exception as exc:  # Ray missing or of another version: nothing to retry
        log.error("autoscaling off: cannot load the raycai node provider: %r", exc)
        return EXIT_NO_RAY
    try:
        workload_credentials(os.environ)
    except NoCredentials as exc:
        log.error("autoscaling off: %s", exc)
        return EXIT_NO_CREDENTIALS
    try:
        from ray.autoscaler._private.monitor import Monitor
    except Exception as exc:
        log.error("autoscaling off: cannot load Ray's autoscaler: %r", exc)
        return EXIT_NO_RAY
    setup_logging()
    log.info("starting Ray's autoscaler for %s with %s", args.address, args.config)
    # retry_on_failure=False: after repeated failed passes the monitor exits and the head
    # launcher starts a fresh one (as KubeRay's container restart does).
    Monitor(
        address=args.address,
        autoscaling_config=os.path.abspath(args.config),
        monitor_ip=None,  # no metrics server (its fixed port clashes between heads)
        retry_on_failure=False,
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
