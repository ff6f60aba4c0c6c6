"""The benchmark suite's library: build, servers, load, scenarios, report."""
