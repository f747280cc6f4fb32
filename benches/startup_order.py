#!/usr/bin/env python3
"""Writes link/startup.order: the functions shopd runs from exec to an idle server, for the linker to put together.

    cargo build --release && python3 benches/startup_order.py [--postgres postgres://postgres@127.0.0.1:5432/postgres]

Starts target/release/shopd under valgrind's callgrind (every function executed, not a sample) three ways: with
no configuration on a fresh SQLite folder (`cargo run`), and with the load harness's configuration on SQLite and
on PostgreSQL (a scratch database, created and dropped here). Each waits for /healthz, stays idle two seconds
and is stopped. The union of the functions it ran, kept to those the binary defines, is written sorted (a
readable diff), one symbol a line. build.rs hands the file to the linker (`--symbol-ordering-file`) for release
builds of the shopd binary, which puts these functions (2.6 MiB) first in .text: a start then maps 3.3 MiB of
code instead of 10.5, the kernel mapping 64 KiB around each first touch (docs/performance.md, "Idle RSS").

Names change when a dependency, the toolchain or a function's own signature changes (the release profile's fat
LTO gives no function a `.llvm.<hash>` name, which ThinLTO changed with any edit of its module); a name the
binary no longer has is skipped by the linker. The load harness prints how many
of the file's names the binary it measures still has: run this again when that falls."""
import argparse, os, re, shutil, signal, subprocess, sys, tempfile, time

from healthz import healthz_ok

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PORT = 18932
# The load harness's configuration (benches/load/servers.rs), so that its idle RSS is of the code it runs.
HARNESS_ENV = {
    "SHOP_DOMAIN": "shop.example.com",
    "SHOP_CURRENCY": "EUR",
    "METRICS_TOKEN": "load-harness-metrics-token-0123456789",
    "SMS_PROVIDER": "twilio",
    "TWILIO_API_BASE": "http://127.0.0.1:9",
    "TWILIO_ACCOUNT_SID": "AC00000000000000000000000000000042",
    "TWILIO_AUTH_TOKEN": "load-harness-twilio-token",
    "TWILIO_FROM": "+15005550006",
    "PAYMENT_PROVIDER": "sandbox",
    "STANDARD_WEBHOOK_SECRETS": "whsec_bG9hZC1oYXJuZXNzLXdlYmhvb2stc2VjcmV0LTMyYg==",
    "RATE_LIMIT_AUTH": "off",
    "RATE_LIMIT_ORDERS": "off",
    "RATE_LIMIT_WEBHOOKS": "off",
    "RATE_LIMIT_API": "off",
}


def functions_run(binary, work, extra_env):
    """The symbol names callgrind saw executed in one start of `shopd serve`."""
    out = os.path.join(work, "callgrind.out")
    env = {"PATH": os.environ.get("PATH", ""), "SHOPD_BIND": f"127.0.0.1:{PORT}", "RUST_LOG": "warn",
           "SHOPD_DATA_DIR": os.path.join(work, "data"), **extra_env}
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--demangle=no", "--compress-strings=no", "--compress-pos=no",
         f"--callgrind-out-file={out}", binary, "serve"],
        cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not healthz_ok(PORT, timeout=0.2):
        if proc.poll() is not None or time.monotonic() - t0 > 120:
            proc.kill()
            sys.exit(f"shopd did not start under valgrind ({extra_env.get('DATABASE_URL', 'SQLite')})")
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    names = set()
    with open(out) as f:
        for line in f:
            m = re.match(r"^c?fn=(?:\(\d+\) )?(\S+)$", line.rstrip("\n"))
            if m:
                names.add(m.group(1))
    return names


def defined_functions(binary):
    nm = subprocess.run(["nm", "--defined-only", binary], check=True, capture_output=True, text=True).stdout
    return {parts[2] for parts in (l.split() for l in nm.splitlines()) if len(parts) == 3 and parts[1] in "tTwW"}


def psql(url, sql):
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql], check=True, capture_output=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/shopd"))
    parser.add_argument("--postgres", help="an admin URL; the PostgreSQL start is left out without it")
    parser.add_argument("--out", default=os.path.join(ROOT, "link/startup.order"))
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt-get install valgrind)")

    run = set()
    with tempfile.TemporaryDirectory() as work:
        run |= functions_run(args.binary, work, {})
    with tempfile.TemporaryDirectory() as work:
        run |= functions_run(args.binary, work, HARNESS_ENV)
    if args.postgres:
        scratch = "shopd_startup_order"
        psql(args.postgres, f"DROP DATABASE IF EXISTS {scratch}")
        psql(args.postgres, f"CREATE DATABASE {scratch}")
        try:
            url = re.sub(r"/[^/]*$", f"/{scratch}", args.postgres)
            with tempfile.TemporaryDirectory() as work:
                run |= functions_run(args.binary, work, {**HARNESS_ENV, "DATABASE_URL": url})
        finally:
            psql(args.postgres, f"DROP DATABASE IF EXISTS {scratch} WITH (FORCE)")

    order = sorted(run & defined_functions(args.binary))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("# Functions shopd runs from exec to an idle server, put first in .text by the linker.\n")
        f.write("# Written by benches/startup_order.py; read by build.rs. Do not edit by hand.\n")
        f.write("".join(name + "\n" for name in order))
    print(f"{len(order)} functions written to {os.path.relpath(args.out, ROOT)}")


if __name__ == "__main__":
    main()
