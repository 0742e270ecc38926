"""``python -m coldstream.train ...`` = ``coldstream train ...``; the module torchrun launches:
``torchrun --nproc_per_node=N -m coldstream.train --config FILE key=value ...``."""

import sys

from coldstream.train.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main(sys.argv[1:]))
