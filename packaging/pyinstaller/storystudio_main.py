"""The bundled program's entry point: the same ``storystudio`` command as the pip install's console script."""

import multiprocessing

from storystudio.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen Windows program re-runs itself for child processes
    raise SystemExit(main())
