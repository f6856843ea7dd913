#!/usr/bin/env python3
"""CPU burner profiled by the real Pyroscope Python client (pyroscope-io 0.8.x or 1.x).

Pushes profiles to a stackdrift server for acceptance tests. About 80% of the
CPU time is spent in burn_hot_loop() and 20% in burn_cold_loop().

Every option can also come from an env var (the flag wins):
  --server          PYROSCOPE_SERVER_ADDRESS       (default http://127.0.0.1:4040)
  --app-name        PYROSCOPE_APPLICATION_NAME     (default cpu_burner)
  --tenant-id       PYROSCOPE_TENANT_ID            (sent as X-Scope-OrgID)
  --basic-auth-user PYROSCOPE_BASIC_AUTH_USERNAME
  --basic-auth-password PYROSCOPE_BASIC_AUTH_PASSWORD
  --auth-token      PYROSCOPE_AUTH_TOKEN           (Authorization: Bearer <token>)
  --tag k=v (repeatable) PYROSCOPE_TAGS="k=v,k2=v2"
  --duration SECONDS     BURNER_DURATION           (default 15)
  --upload-interval SECONDS PYROSCOPE_UPLOAD_INTERVAL (1.x only; 0.8.x is fixed at 10 s)
  --log-level LEVEL BURNER_LOG_LEVEL (default WARNING: push errors only; INFO: every push)

The last partial profile is pushed at exit with both versions. Push errors are
only logged by the client (e.g. "Sending Session failed 400"), never raised.
Exit code: 0 ok, 2 pyroscope not importable or the agent did not start.
"""
import argparse
import inspect
import os
import sys
import time


def burn_hot_loop(seconds):
    """Hottest function: spins for `seconds` of wall time."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for i in range(1000):
            x += i * i
    return x


def burn_cold_loop(seconds):
    """Colder function: same work, a quarter of the time of burn_hot_loop."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        for i in range(1000):
            x ^= i
    return x


def parse_args():
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--server", default=env("PYROSCOPE_SERVER_ADDRESS", "http://127.0.0.1:4040"))
    p.add_argument("--app-name", default=env("PYROSCOPE_APPLICATION_NAME", "cpu_burner"))
    p.add_argument("--tenant-id", default=env("PYROSCOPE_TENANT_ID", ""))
    p.add_argument("--basic-auth-user", default=env("PYROSCOPE_BASIC_AUTH_USERNAME", ""))
    p.add_argument("--basic-auth-password", default=env("PYROSCOPE_BASIC_AUTH_PASSWORD", ""))
    p.add_argument("--auth-token", default=env("PYROSCOPE_AUTH_TOKEN", ""))
    p.add_argument("--tag", action="append", default=[], metavar="K=V")
    p.add_argument("--duration", type=float, default=float(env("BURNER_DURATION", "15")))
    p.add_argument("--upload-interval", type=int, default=int(env("PYROSCOPE_UPLOAD_INTERVAL", "10")))
    p.add_argument("--sample-rate", type=int, default=100)
    p.add_argument("--log-level", default=env("BURNER_LOG_LEVEL", "WARNING"),
                   help="client log level on stderr (INFO shows each push); OFF disables")
    a = p.parse_args()
    tags = [t for t in env("PYROSCOPE_TAGS", "").split(",") if t] + a.tag
    try:
        a.tags = dict(t.split("=", 1) for t in tags)
    except ValueError:
        p.error(f"tags must be k=v, got {tags!r}")
    return a


def main():
    a = parse_args()
    try:
        from importlib.metadata import version
        import pyroscope
        ver = version("pyroscope-io")
    except Exception as e:  # noqa: BLE001
        print(f"cpu_burner: cannot import pyroscope ({e!r}); python={sys.executable}", file=sys.stderr)
        return 2

    logging_on = a.log_level.upper() != "OFF"
    if logging_on:  # the native agent logs to stderr at the Python root logger's level
        import logging
        logging.basicConfig(level=a.log_level.upper(), stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    kwargs = dict(
        application_name=a.app_name, server_address=a.server, tenant_id=a.tenant_id,
        basic_auth_username=a.basic_auth_user, basic_auth_password=a.basic_auth_password,
        tags=a.tags, sample_rate=a.sample_rate, enable_logging=logging_on,
        upload_interval=a.upload_interval, auth_token=a.auth_token, http_headers={},
    )
    accepted = inspect.signature(pyroscope.configure).parameters
    if a.auth_token and "auth_token" not in accepted:
        # 1.x dropped auth_token: send the same header 0.8.x builds from it.
        kwargs["http_headers"]["Authorization"] = f"Bearer {a.auth_token}"
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}

    print(f"cpu_burner: pyroscope-io {ver} -> {a.server} app={a.app_name} "
          f"tenant={a.tenant_id or '-'} tags={a.tags} duration={a.duration}s", file=sys.stderr, flush=True)
    try:
        ok = pyroscope.configure(**kwargs)  # 1.x returns a bool, 0.8.x returns None
    except Exception as e:  # noqa: BLE001
        print(f"cpu_burner: pyroscope.configure failed: {e!r}", file=sys.stderr)
        return 2
    if ok is False:
        print("cpu_burner: pyroscope.configure returned False (agent not started)", file=sys.stderr)
        return 2

    end = time.monotonic() + a.duration
    while time.monotonic() < end:
        burn_hot_loop(0.008)   # ~80%
        burn_cold_loop(0.002)  # ~20%

    # Both versions push the last partial profile on shutdown(). 1.x waits for the
    # server's response; 0.8.x only hands it to a background thread and returns,
    # so give that thread a moment to write the request before the process exits.
    pyroscope.shutdown()
    if ver.startswith("0."):
        time.sleep(0.5)
    print("cpu_burner: done", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
