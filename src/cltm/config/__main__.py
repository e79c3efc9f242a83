"""`python -m cltm.config my_experiment.yaml [more.yaml]`: check config files before running Snakemake."""

from __future__ import annotations

import sys

from cltm.config.validate import ConfigError, check_files


def main(argv=None) -> int:
    """Check config files as Snakemake would merge them over config/config.yaml; 0 when valid."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m cltm.config CONFIG.yaml [MORE.yaml ...]", file=sys.stderr)
        return 2
    try:
        check_files(paths)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{', '.join(map(str, paths))}: valid (merged over config/config.yaml)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
