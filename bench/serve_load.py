"""A bounded load test of `hfkit serve` on loopback with the official openai client: N chat requests,
C at a time, greedy; prints requests/s, latency percentiles and tokens/s, and the same requests one at a
time for comparison (one run, side by side).

    python bench/serve_load.py RUN [--requests 50] [--concurrency 8] [--max-tokens 16] [--completions]
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
from openai import OpenAI

PROMPTS = ["What is the code word number 0?", "What is the code word number 3?", "Translate to German: Open the file",
           "Say something", "What is the code word number 5?"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--completions", action="store_true", help="/v1/completions (a run that does not chat)")
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "hfkit", "serve", a.run, "--port", str(port)],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        name = client.models.list().data[0].id

        def ask(i):
            t = time.perf_counter()
            if a.completions:
                r = client.completions.create(model=name, prompt=PROMPTS[i % len(PROMPTS)], temperature=0,
                                              max_tokens=a.max_tokens)
            else:
                r = client.chat.completions.create(model=name, temperature=0, max_tokens=a.max_tokens,
                                                   messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}])
            return time.perf_counter() - t, r.usage.completion_tokens

        ask(0)  # warm up
        rows = {}
        for label, workers in (("one at a time", 1), (f"{a.concurrency} concurrent", a.concurrency)):
            errors = 0
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                futures = [pool.submit(ask, i) for i in range(a.requests)]
                results = []
                for f in futures:
                    try:
                        results.append(f.result())
                    except Exception:
                        errors += 1
            wall = time.perf_counter() - t0
            lat = np.array([r[0] for r in results]) * 1000
            rows[label] = {"requests": a.requests, "errors": errors, "requests_per_s": round(a.requests / wall, 2),
                           "p50_ms": round(float(np.percentile(lat, 50)), 1),
                           "p90_ms": round(float(np.percentile(lat, 90)), 1),
                           "p99_ms": round(float(np.percentile(lat, 99)), 1),
                           "completion_tokens_per_s": round(sum(r[1] for r in results) / wall, 1)}
        print(json.dumps(rows, indent=2))
        print(f"{'load':<16}{'req/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'tok/s':>8}{'errors':>8}")
        for k, r in rows.items():
            print(f"{k:<16}{r['requests_per_s']:>8}{r['p50_ms']:>9}{r['p90_ms']:>9}{r['p99_ms']:>9}"
                  f"{r['completion_tokens_per_s']:>8}{r['errors']:>8}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
