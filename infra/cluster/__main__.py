"""python -m infra.cluster up|down|status (``make cluster-up`` / ``make cluster-down``)."""

from __future__ import annotations

import argparse

from infra.cluster import cluster_dir, read_state
from infra.cluster.lifecycle import down, running, up
from infra.cluster.stack import STACK


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m infra.cluster", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    command = parser.parse_args().command
    root = cluster_dir()
    if command == "up":
        urls = up(root)
        print(f"local cluster up ({root}); active stack: {STACK}")
        for name, url in urls.items():
            print(f"  {name:<10} {url}")
        print(f"  kubeconfig {root / 'kubeconfig'}; logs {root / 'logs'}")
    elif command == "down":
        stopped, client = down(root)
        print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        if client:
            print(f"ZenML client config {client} points at the store it used before cluster-up again")
    else:
        print(f"{'running' if running(root) else 'not running'}: {read_state(root).get('urls', {})}")


if __name__ == "__main__":
    main()
