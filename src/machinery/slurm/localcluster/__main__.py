"""``python -m machinery.slurm.localcluster up|down|env [--dir DIR]``: what ``make cluster-up``
and ``make cluster-down`` call."""

from __future__ import annotations

import argparse
from pathlib import Path

from machinery.errors import exits_cleanly
from machinery.slurm.localcluster.cluster import DEFAULT_USER, ENV_FILE, ClusterInfo, LocalCluster


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m machinery.slurm.localcluster")
    parser.add_argument("action", choices=["up", "down", "env"])
    parser.add_argument("--dir", type=Path, default=Path(".local/cluster"))
    parser.add_argument("--user", default=DEFAULT_USER, help="the login user (created if absent)")
    parser.add_argument("--cpus", type=int, default=None)
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.dir, user=args.user, cpus=args.cpus)
    if args.action == "up":
        info = cluster.up()
        print(f"local Slurm cluster up: ssh {info.user}@{info.host} -p {info.ssh_port}")
        print(f"point the offload at it:  source {Path(info.state_dir) / ENV_FILE}")
    elif args.action == "down":
        cluster.down()
        print("local Slurm cluster stopped")
    else:
        info = ClusterInfo.load(args.dir)
        for key, value in info.env().items():
            print(f"export {key}='{value}'")


if __name__ == "__main__":
    main()
