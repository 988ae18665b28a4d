"""Two workers writing one cache table: do they keep the same entries?

    deploy/kafka/with-kafka.sh .venv/bin/python examples/cache_bound/two_workers.py [--requests N]

Starts two processes, each a Faust app with the cache table (as cache_bound.py), in one
consumer group; each caches its own half of the requests (even, odd), then both keep looking
up for a while and print what they hold. Faust applies the changelog (the other worker's writes,
everyone's tombstones) in batches of up to 1,000 records, so the two agree once enough has been
written and applied, not at once.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from cache_bound import INTEGRATION, cache_app, response  # noqa: E402

from streams.cache import request_fingerprint  # noqa: E402
from streams.cache_index import CacheLimit, CachePolicy  # noqa: E402


async def worker(
    bootstrap: str, app_id: str, parity: int, requests: int, bound: int, start_at: float
) -> None:
    policy = CachePolicy({INTEGRATION: CacheLimit(bound, 3600)}, default=None)
    async with cache_app(bootstrap, app_id, policy) as run:
        await asyncio.sleep(max(0.0, start_at - time.time()))  # both write at the same time
        for i in range(parity, requests, 2):
            key = request_fingerprint(INTEGRATION, "GET", f"https://partner.example/{i}", None)
            await run.cache.put(key, response(time.time(), 100, i))
            if i % 200 < 2:
                await run.app.producer.flush()
        await run.app.producer.flush()
        for _ in range(15):  # lookups go on as traffic would; each may compare with the table
            await asyncio.sleep(1)
            await run.cache.get(f"{INTEGRATION}:nothing")
        held = sorted(run.cache.index)
        digest = hashlib.sha256("".join(held).encode()).hexdigest()[:12]
        print(f"worker {parity}: table {len(run.table.data)}, index {len(held)}, keys digest {digest}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=os.environ.get("LEADSTREAMS_BOOTSTRAP"))
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--max-entries", type=int, default=500)
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--app-id", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.bootstrap:
        parser.error("set --bootstrap or LEADSTREAMS_BOOTSTRAP (or run through deploy/kafka/with-kafka.sh)")
    if args.worker is not None:
        bound = args.max_entries
        asyncio.run(worker(args.bootstrap, args.app_id, args.worker, args.requests, bound, args.start_at))
        return
    app_id = f"cache-two-{uuid.uuid4().hex[:8]}"
    start_at = time.time() + 15  # both apps started and recovered by then
    common = ["--bootstrap", args.bootstrap, "--requests", str(args.requests), "--max-entries",
              str(args.max_entries), "--app-id", app_id, "--start-at", str(start_at)]  # fmt: skip
    quiet = subprocess.DEVNULL  # Faust's start-up logging
    workers = [
        subprocess.Popen([sys.executable, __file__, "--worker", str(side), *common], stderr=quiet)
        for side in (0, 1)
    ]
    for process in workers:
        process.wait(timeout=300)


if __name__ == "__main__":
    main()
