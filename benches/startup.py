#!/usr/bin/env python3
"""Start-up time to listening and idle RSS of the release binary, on an already migrated SQLite database.

    cargo build --release && python3 benches/startup.py [target/release/shopd] [runs]

Starts shopd `runs` times (default 20) in a fresh folder, measures the time from exec until /healthz answers
200, then reads the idle resident memory (VmRSS) one second after start. Prints the median and the worst."""
import os, statistics, subprocess, sys, tempfile, time

from healthz import healthz_ok

binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/release/shopd")
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 20
port = 18931


with tempfile.TemporaryDirectory() as work:
    env = {"PATH": os.environ.get("PATH", ""), "SHOPD_BIND": f"127.0.0.1:{port}", "RUST_LOG": "warn"}
    subprocess.run([binary, "migrate"], cwd=work, env=env, check=True, capture_output=True)
    starts, rss = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary, "serve"], cwd=work, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not healthz_ok(port, timeout=0.05):
            if time.perf_counter() - t0 > 10:
                proc.kill()
                sys.exit("shopd did not start within 10 s")
            time.sleep(0.0005)
        starts.append((time.perf_counter() - t0) * 1000)
        time.sleep(1)
        with open(f"/proc/{proc.pid}/status") as f:
            kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        rss.append(kb / 1024)
        proc.terminate()
        proc.wait()
    print(f"start-up to listening: median {statistics.median(starts):.1f} ms, worst {max(starts):.1f} ms ({runs} runs)")
    print(f"idle RSS: median {statistics.median(rss):.1f} MiB, worst {max(rss):.1f} MiB")
