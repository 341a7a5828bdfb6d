"""The main file spark-submit runs: the `varsky` command line, from the --py-files archive."""

import sys

# spark-submit puts this file's folder (jobs/) first on sys.path; the package imports need the
# archive instead.
sys.path = [p for p in sys.path if not p.rstrip("/").endswith("jobs")]

from jobs.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
