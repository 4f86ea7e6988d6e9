"""A protocol-faithful ComfyUI stand-in for tests, benchmarks and the mock backend."""
