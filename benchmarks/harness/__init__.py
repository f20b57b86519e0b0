"""What the benchmark entry points (``python -m benchmarks``, ``benchmarks.callgrind``,
``benchmarks.rotation``) are made of: the workloads, the client modes, the e2e, micro and drain
measurements, statistics and the plot."""
