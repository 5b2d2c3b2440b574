"""threefold.apps: the three vertical applications and the suite's command line."""
