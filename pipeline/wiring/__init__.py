"""Where the Faust app is wired to the pure cores of agents/: its agents, runtimes and hooks."""
