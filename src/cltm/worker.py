"""`python -m cltm.worker ...`: the command line of the workflow's training jobs (unchanged since the jobs
were first written that way): a client of the warm worker, `cltm.grid.worker`."""

import sys

from cltm.grid.worker import entry

if __name__ == "__main__":
    sys.exit(entry(sys.argv[1:]))
