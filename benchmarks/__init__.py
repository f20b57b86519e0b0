"""Standalone benchmarks: graceful_grpc side by side with raw grpc.aio, in the same run."""
