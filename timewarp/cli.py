"""The ``timewarp`` command line."""

from __future__ import annotations

import argparse
import sys

from timewarp.data.sample import SampleSpec, make_sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="timewarp", description="TimeWarp data tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser(
        "make-sample", help="Write a generated FineVideo miniature (OUT/data/*.parquet)."
    )
    sample.add_argument("--out", required=True, help="output folder")
    sample.add_argument("--videos", type=int, default=24, help="number of videos (rows)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--preset", choices=("small", "learnable", "realistic"), default="small",
        help="small: fast tests; learnable: what a tiny model learns on CPU (56x56, 4 one-second "
        "scenes); realistic: FineVideo-like videos (640x360, 30 fps, 60-105 s, 5-8 scenes, textured)",
    )
    sample.add_argument("--realistic", action="store_true", help="same as --preset realistic")
    args = parser.parse_args(argv)
    if args.videos < 1:
        parser.error("--videos must be at least 1")
    spec = SampleSpec.preset("realistic" if args.realistic else args.preset)
    paths = make_sample(args.out, videos=args.videos, seed=args.seed, spec=spec)
    print(f"wrote {args.videos} videos in {len(paths)} shard(s) under {args.out}/data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
