"""Command-line tools around the node: set-up, run, demo, benchmark."""
