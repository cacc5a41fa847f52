"""The sources of MISP events: a MISP server or local files. Every source yields normalised
events (see `normalize.py`) and reports unreadable inputs to the run report."""
