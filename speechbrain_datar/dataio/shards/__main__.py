"""``python -m speechbrain_datar.dataio.shards check <folder>``.

Part of ``speechbrain_datar.dataio.shards`` (the package documents the format).
"""

import os

from speechbrain_datar.dataio.shards.checking import check_shards


def main(argv=None):
    """``python -m speechbrain_datar.dataio.shards check <folder>``: verifies every shard (size, SHA-256,
    clips); exit status 1 when one is not whole."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", choices=["check"])
    parser.add_argument("folder")
    parser.add_argument(
        "--prepared",
        default=None,
        help="the prepared folder the shards were written from (its train/valid/test.json): also checks that every "
        "clip's metadata is its manifest entry, as training and evaluation do",
    )
    args = parser.parse_args(argv)
    manifests = None
    if args.prepared:
        manifests = {s: os.path.join(args.prepared, f"{s}.json") for s in ("train", "valid", "test")}
        manifests = {s: p for s, p in manifests.items() if os.path.isfile(p)}
    problems = check_shards(args.folder, manifests)
    for name, problem in problems.items():
        print(f"{name}: {problem}")
    if not problems:
        print(f"all shards in {args.folder} are whole")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
