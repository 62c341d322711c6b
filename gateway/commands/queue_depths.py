"""`mailgw queue`: the queue's depths, read with as little imported as the answer needs."""

from __future__ import annotations

import argparse
from typing import TextIO

from gateway.commands.support import print_json, redis_for_cli
from gateway.config import Config
from gateway.depths import read_depths
from gateway.keys import Keys


async def cmd_queue(config: Config, args: argparse.Namespace, out: TextIO) -> int:
    redis = redis_for_cli(config)
    try:
        redis_settings = config.settings.redis
        depths = await read_depths(redis, Keys(redis_settings.prefix), redis_settings.group)
    finally:
        await redis.aclose()
    rows = {
        "ready": depths.ready,
        "in_flight": depths.in_flight,
        "scheduled": depths.scheduled,
        "retrying": depths.retrying,
        "dead_letters": depths.dead_letters,
    }
    if args.json:
        print_json(rows, out)
    else:
        for name, count in rows.items():
            out.write(f"{name.replace('_', ' '):<13}{count:>10}\n")
    return 0
